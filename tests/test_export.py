"""save_pretrained vs transformers: every layout we load is exported and read back by transformers
(``AutoModelForCausalLM``, ``AutoTokenizer``) and by minigemma. The real Gemma 3 270M GGUF gives the
same logits and, through a tokenizer.json built from its scores, the same ids; tiny random
checkpoints saved by transformers (Gemma 3, Gemma 4 with PLE and KV sharing, keys as values, MoE,
vision + audio towers) come back tensor for tensor. Swaps with no float weights are refused."""

import filecmp
import itertools
import json
import random
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import minigemma
from minigemma import CheckpointError, Tokenizer, save_pretrained
from minigemma.export import tokenizer_json, write_tokenizer
from minigemma.multimodal import IMAGE_ID, multimodal_prompt
from minigemma.tokenizer import BYTE, CONTROL, NORMAL, USER_DEFINED

from .conftest import make_tiny_gemma3
from .test_audio import clip, features, hf_features, make_multimodal
from .test_gemma4 import make_tiny_gemma4
from .test_vision import hf_inputs, two_images

TEXTS = [
    "", " ", "  ", "\n", "a", "The capital of France is", " " * 40, "  leading and trailing  ",
    "one  two   three    four     five", "tabs\tand\t\ttabs\t\t\tend", "lines\n\nand\n\n\n\nmore\r\nwindows\r\n",
    " \n \n\t \t\n  \n", "def add(a, b):\n    return a + b  # two spaces\n\n\nclass A:\n\tpass\n",
    "<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n",
    "<bos><eos><pad><unk><mask>[multimodal]<unused0><unused6241>", "<|turn>user\nHi<turn|>", "<start_of_turn",
    "<table><tr><td>1</td></tr></table><h1>T</h1>", "literal <0x41> and ▁ and ▁▁ and _",
    "日本語のテキストです。中文句子，한국어 문장.", "مرحبا بالعالم", "नमस्ते दुनिया", "Ünïcödé çàfé naïve — “quotes” … ½ ∑ ∞",
    "emoji 😀👍🏽 👨‍👩‍👧 🇫🇷 ❤️", "rare \U00013000 \U0001F9FF \uE000 \U0010FFFF \u0378 \x00\x01\x7f",
    "e\u0301 a\u0308 (combining)", "https://example.com/path?q=1&x=%20#frag", "x = [i**2 for i in range(10)]; print(x)",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "the the the the the", "1234567890 3.14159 -42 1e-6",
]
ALPHABET = ["a", "b", "e", "t", "th", "the", " ", "  ", "   ", "\n", "\n\n", "\t", "é", "中", "文", "😀", "<", ">",
            "start_of_turn", "<end_of_turn>", "▁", "\U00013000", "ing", ".", ",", "'", "0", "9", "\r"]


def random_texts(n=300, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 30))) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer(hf_tokenizer_dir):
    """The Gemma 3 vocabulary every tiny checkpoint uses, read once (it takes seconds) and passed to load."""
    return Tokenizer.from_file(hf_tokenizer_dir / "tokenizer.json")


# --- the real Gemma 3 270M, from its GGUF --------------------------------------------------------


@pytest.fixture(scope="module")
def exported(gemma, tmp_path_factory):
    """The 270M GGUF model exported once (~1 GB of float32), removed after this file's tests."""
    model, tokenizer = gemma
    directory = save_pretrained(model, tokenizer, tmp_path_factory.mktemp("gemma3-270m"))
    yield directory
    shutil.rmtree(directory)


@pytest.fixture(scope="module")
def hf_exported(exported):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32, output_loading_info=True)
    return model.eval(), info


def test_real_export_files(exported):
    config = json.loads((exported / "config.json").read_text())
    assert (config["architectures"], config["model_type"], config["dtype"]) == (["Gemma3ForCausalLM"], "gemma3_text",
                                                                                "float32")
    generation = json.loads((exported / "generation_config.json").read_text())
    assert generation == {"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0}  # <eos>, <end_of_turn>
    names = load_file(exported / "model.safetensors").keys()
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names and len(names) == 236


@torch.no_grad()
def test_real_export_gives_our_logits_in_transformers(gemma, hf_exported, sample_text):
    model, tok = gemma
    ref, info = hf_exported
    assert type(ref).__name__ == "Gemma3ForCausalLM"
    assert not any(info.values()), info  # nothing missing, unexpected or misshaped
    prompts = ["The capital of France is", "def add(a, b):\n    return", "東京は日本の首都です。Paris is",
               tok.decode(tok.encode(sample_text)[:530])]  # past the 512-token window
    worst = 0.0
    for text in prompts:
        ids = torch.tensor([tok.encode(text, add_bos=True)])
        ours, theirs = model(ids), ref(ids).logits
        worst = max(worst, (ours - theirs).abs().max().item())
        assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    assert ids.shape[1] > 512 + 10
    assert worst <= 2e-4, f"max |logit difference| {worst:.2e} (logits reach ~35)"


def test_real_export_tokenizer_gives_our_ids_in_transformers(gemma, exported, corpus, sample_text):
    from transformers import AutoTokenizer

    tok = gemma[1]
    hf = AutoTokenizer.from_pretrained(exported)
    texts = TEXTS + corpus + [sample_text] + random_texts()
    same = [hf(t, add_special_tokens=False).input_ids == tok.encode(t) for t in texts]
    assert all(same), [t for t, s in zip(texts, same) if not s][:5]
    assert len(same) == len(TEXTS) + len(corpus) + 1 + 300
    for text in texts:
        ids = tok.encode(text)
        assert hf.decode(ids) == tok.decode(ids)
        assert hf.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True)
    assert hf("Hi").input_ids == tok.encode("Hi", add_bos=True)  # <bos> first, as Gemma expects
    assert tok.encode(" " * 40) == [167, 145]  # the user-defined whitespace runs, as SentencePiece cuts them


@torch.no_grad()
def test_real_export_loads_back_into_minigemma(gemma, exported, corpus):
    model, tok = gemma
    again, tok_again = minigemma.load(exported, progress=False)
    assert again.config == model.config
    ids = torch.tensor([tok.encode("The capital of France is", add_bos=True)])
    assert torch.equal(again(ids), model(ids))
    for text in TEXTS + corpus:  # now read through the exported merge list
        assert tok_again.encode(text) == tok.encode(text), text


def test_tokenizer_read_from_json_is_written_back_with_its_merges(tokenizer, corpus, sample_text, tmp_path,
                                                                   monkeypatch):
    """Without its file to copy, a tokenizer.json-read tokenizer is serialised from its merge list."""
    from tokenizers import Tokenizer as HFTokenizer

    tok = tokenizer
    monkeypatch.setattr(tok, "source", None)
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json(tok), ensure_ascii=False), encoding="utf-8")
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in TEXTS + corpus + [sample_text]:
        assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text), text


def small_vocabulary(seed):
    """A SentencePiece-style vocabulary small enough to read: control and user-defined pieces, the 256
    byte pieces, and a random third of all words of 2-5 letters over a, b, c, ▁ with random distinct
    scores, so that most pieces can be cut into two symbols in several ways."""
    rng = random.Random(seed)
    specials = {"<pad>": CONTROL, "<eos>": CONTROL, "<bos>": CONTROL, "<unk>": CONTROL, "<start_of_turn>": CONTROL,
                "\n": USER_DEFINED, "  ": USER_DEFINED}
    letters = list("abc▁")
    words = ["".join(w) for n in range(2, 6) for w in itertools.product(letters, repeat=n) if rng.random() < 0.35]
    normal = letters + words
    pieces = list(specials) + [f"<0x{b:02X}>" for b in range(256)] + normal
    types = list(specials.values()) + [BYTE] * 256 + [NORMAL] * len(normal)
    scores = [-1000.0] * (len(specials) + 256) + [float(s) for s in rng.sample(range(-3 * len(normal), 0), len(normal))]
    return Tokenizer(pieces, types, scores=scores)


def test_merges_from_scores_give_sentencepiece_ids_on_random_vocabularies(tmp_path):
    """The merge list of ``merges_from_scores`` makes HF's BPE cut like our SentencePiece-style BPE on
    vocabularies where one piece has many cuts (ranked in any order among themselves). (A merge list
    ordered by piece length instead fails here on hundreds of strings.) AutoTokenizer reads the files
    too, without adding a <mask> the vocabulary lacks."""
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import AutoTokenizer

    strings = ["a", "b", "c", " ", "a", "b", "c", " ", "\n", "  ", "é", "<bos>", "<start_of_turn>"]
    for seed in range(10):
        tok = small_vocabulary(seed)
        write_tokenizer(tok, tmp_path)
        hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
        rng = random.Random(seed)
        for text in ("".join(rng.choice(strings) for _ in range(rng.randint(0, 40))) for _ in range(300)):
            assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text), (seed, text)
    auto = AutoTokenizer.from_pretrained(tmp_path)
    assert len(auto) == tok.vocab_size and auto.mask_token is None
    assert auto("ab  c\n", add_special_tokens=False).input_ids == tok.encode("ab  c\n")


# --- every layout we load, from tiny random checkpoints saved by transformers ----------------------

LAYOUTS = ["gemma3", "e-style", "31b-style", "26b-style", "e-style+vision+audio"]


@pytest.fixture(scope="module", params=LAYOUTS)
def layout(request, tmp_path_factory, hf_tokenizer_dir, tokenizer):
    """A transformers checkpoint (``ref``), minigemma's load of it, its export and transformers' load of that."""
    from transformers import AutoModelForCausalLM

    name = request.param
    source = tmp_path_factory.mktemp(f"source-{name}")
    if name == "gemma3":
        ref = make_tiny_gemma3(source, hf_tokenizer_dir)
    elif name == "e-style+vision+audio":  # E2B-like: PLE, KV sharing, both towers
        ref = make_multimodal(source, hf_tokenizer_dir, "default", with_vision=True)
    else:
        ref = make_tiny_gemma4(source, hf_tokenizer_dir, name)
    model, _ = minigemma.load(source, progress=False, tokenizer=tokenizer)
    out = save_pretrained(model, tokenizer, tmp_path_factory.mktemp(f"export-{name}"))
    hf, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    return SimpleNamespace(name=name, ref=ref, model=model, tokenizer=tokenizer, source=source, out=out,
                           hf=hf.eval(), info=info)


def inputs(layout):
    """(our forward's kwargs, transformers' forward's kwargs): 40 random ids (window 8), or for the
    multimodal layout a prompt holding an image and a clip."""
    if "vision" not in layout.name:
        ids = torch.randint(3, 262144, (2, 40), generator=torch.Generator().manual_seed(1))
        return {"input_ids": ids}, {"input_ids": ids}
    images, waveforms = two_images()[:1], [clip(1.3, seed=2)]
    ids = multimodal_prompt(layout.tokenizer, "Look: <|image|> and listen: <|audio|>. What is it?", images=images,
                            audio=features(waveforms))
    assert IMAGE_ID in ids
    feats, mask = hf_features(waveforms)
    theirs = {**hf_inputs(ids, images), "input_features": feats, "input_features_mask": mask}
    return {"input_ids": torch.tensor([ids]), "images": images, "audio": features(waveforms)}, theirs


@torch.no_grad()
def test_transformers_reads_the_export_tensor_for_tensor(layout):
    assert type(layout.hf) is type(layout.ref)
    assert not any(layout.info.values()), layout.info  # no KV-shared k_proj is reported missing, nothing is unexpected
    saved = load_file(layout.out / "model.safetensors")
    theirs = {k: v for k, v in layout.ref.state_dict().items() if k != "lm_head.weight"}  # tied
    assert saved.keys() == theirs.keys()
    assert all(torch.equal(saved[k], theirs[k]) for k in theirs)
    _, kwargs = inputs(layout)
    out, ref = layout.hf(**kwargs).logits, layout.ref(**kwargs).logits
    assert ref.abs().max() > 3  # logits of a useful size
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


@torch.no_grad()
def test_minigemma_reads_the_export_back_exactly(layout):
    again, _ = minigemma.load(layout.out, progress=False, tokenizer=layout.tokenizer)  # its file is compared below
    assert again.config == layout.model.config and type(again) is type(layout.model)
    for part in ("vision_config", "audio_config"):
        assert getattr(again, part, None) == getattr(layout.model, part, None)
    ours, _ = inputs(layout)
    assert torch.equal(again(**ours), layout.model(**ours))
    assert filecmp.cmp(layout.out / "tokenizer.json", layout.source / "tokenizer.json", shallow=False)
    source = json.loads((layout.source / "config.json").read_text())
    assert json.loads((layout.out / "config.json").read_text()) == {**source, "dtype": "float32"}  # copied


@torch.no_grad()
def test_config_written_from_our_dataclasses(layout, tmp_path, monkeypatch):
    """A model with no config.json to copy (as if built in code) gets one from TextConfig and the tower
    configs; transformers reads it into the same class with the same logits."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(layout.model, "origin", None)
    out = save_pretrained(layout.model, layout.tokenizer, tmp_path, max_shard_bytes=40 * 2**20)  # in shards
    assert (out / "model.safetensors.index.json").exists() and not (out / "model.safetensors").exists()
    hf, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    assert type(hf) is type(layout.ref) and not any(info.values()), info
    _, kwargs = inputs(layout)
    torch.testing.assert_close(hf.eval()(**kwargs).logits, layout.ref(**kwargs).logits, atol=1e-6, rtol=0)
    again, _ = minigemma.load(out, progress=False, tokenizer=layout.tokenizer)
    assert again.config == layout.model.config


# --- other sources and options ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, hf_tokenizer_dir):
    directory = tmp_path_factory.mktemp("tiny-gemma3")
    make_tiny_gemma3(directory, hf_tokenizer_dir)
    return directory


@torch.no_grad()
def test_gemma3_multimodal_checkpoint_exports_its_text_model(tmp_path, hf_tokenizer_dir, tokenizer):
    """minigemma builds only the text decoder of a Gemma3ForConditionalGeneration: that is what is
    exported, as a Gemma3ForCausalLM with a config written from TextConfig."""
    from transformers import AutoModelForCausalLM

    source = tmp_path / "source"
    ref = make_tiny_gemma3(source, hf_tokenizer_dir)
    state = load_file(source / "model.safetensors")  # the multimodal layout: text under model.language_model.
    state = {k.replace("model.", "model.language_model.", 1): v for k, v in state.items()}
    save_file({**state, "model.vision_tower.patch_embedding.weight": torch.zeros(4, 4)}, source / "model.safetensors")
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": config}))
    model, tok = minigemma.load(source, progress=False, tokenizer=tokenizer)
    assert model.origin.architecture == "Gemma3ForConditionalGeneration"
    out = save_pretrained(model, tok, tmp_path / "out")
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert type(hf).__name__ == "Gemma3ForCausalLM"
    ids = torch.randint(3, 262144, (1, 30), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hf(ids).logits, ref(ids).logits, atol=1e-6, rtol=0)


@torch.no_grad()
def test_dtype_and_companion_files(tiny_dir, tmp_path):
    """dtype= casts the saved weights and names the dtype in config.json; the tokenizer's companion
    files (tokenizer_config.json, chat template) are copied from the tokenizer.json's directory."""
    source = tmp_path / "source"
    shutil.copytree(tiny_dir, source)
    (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GemmaTokenizer", "x": 1}))
    (source / "chat_template.jinja").write_text("{{ messages }}")
    model, tok = minigemma.load(source, progress=False)
    out = save_pretrained(model, tok, tmp_path / "out", dtype=torch.bfloat16)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert filecmp.cmp(out / name, source / name, shallow=False), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    saved = load_file(out / "model.safetensors")
    assert all(saved["model." + k].dtype == torch.bfloat16 and torch.equal(saved["model." + k], v.to(torch.bfloat16))
               for k, v in model.state_dict().items())
    again, _ = minigemma.load(out, progress=False, tokenizer=tok)
    assert again.dtype == torch.float32  # load's default, from the bf16 weights


def test_quantised_model_is_refused(tiny_dir, tokenizer, tmp_path):
    model, tok = minigemma.load(tiny_dir, quantize="int8", progress=False, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"^embed_tokens is quantised \(QuantEmbedding\): .* load the model without "
                                         r"quantize= to export it"):
        save_pretrained(model, tok, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_packed_model_is_refused(tiny_dir, tokenizer, tmp_path):
    from minigemma.pack import can_pack

    if not can_pack():
        pytest.skip("this PyTorch has no oneDNN kernels, so nothing can be packed")
    model, tok = minigemma.load(tiny_dir, dtype=torch.bfloat16, pack=True, progress=False, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"is packed for oneDNN .* load the model without pack=True"):
        save_pretrained(model, tok, tmp_path)


class Adapted(nn.Module):
    """The shape of a LoRA layer (``lora.py``): a base layer plus low-rank factors lora_A, lora_B."""

    def __init__(self, base, r=2):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)  # (r, in)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)  # (out, r)

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x))


def test_unmerged_adapters_and_removed_layers_are_refused(tiny_dir, tokenizer, tmp_path):
    model, tok = minigemma.load(tiny_dir, progress=False, tokenizer=tokenizer)
    q_proj = model.layers[1].self_attn.q_proj
    model.layers[1].self_attn.q_proj = Adapted(q_proj)
    with pytest.raises(ValueError, match=r"layers\.1\.self_attn\.q_proj carries unmerged LoRA adapters: .*"
                                         r"minigemma\.lora\.merge\(model\)"):
        save_pretrained(model, tok, tmp_path)
    model.layers[1].self_attn.q_proj = q_proj
    model.layers = model.layers[:-1]
    with pytest.raises(CheckpointError, match=r"do not fit its config.json .* missing model\.layers\.6\."):
        save_pretrained(model, tok, tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_source_directory_is_not_overwritten(tiny_dir, tokenizer):
    model, tok = minigemma.load(tiny_dir, progress=False, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="is where the model or its tokenizer was read from"):
        save_pretrained(model, tok, tiny_dir)
