"""Speculative decoding gives plain decoding's text in every load setting (row_exact.py): a verifying
pass computes each row bit for bit as a one-token step does, caches included, on tiny random models
of three Gemma 4 styles (the ring buffers wrap) and on the real 270M; drafts are accepted and rejected."""

import pytest
import torch

import minigemma
from minigemma import KVCache, generate_ids
from minigemma.row_exact import one_row_at_a_time, row_invariant
from minigemma.speculative import PromptLookup, Stats, speculative_ids
from minigemma.tiny import tiny_random
from minigemma.weights import build_model

SETTINGS = {"float32": {}, "bfloat16": dict(dtype=torch.bfloat16), "pack": dict(dtype=torch.bfloat16, pack=True),
            "int8": dict(quantize="int8"), "int4": dict(quantize="int4"), "int4-all": dict(quantize="int4-all")}
CASES = [(style, setting) for style in ("gemma4-e2b", "gemma4-26b-a4b", "gemma4-31b") for setting in SETTINGS
         if not (style == "gemma4-e2b" and setting.startswith("int4"))]  # its toy PLE width 8 has no int4 groups


def caches_equal(a, b):
    for la, lb in zip(a.layers, b.layers):
        if la is None:
            continue
        for name in ("k", "v", "pos"):
            x, y = getattr(la, name), getattr(lb, name)
            if (x is None) != (y is None) or x is not None and not torch.equal(x, y):
                return False
    return True


@pytest.mark.parametrize("style,setting", CASES)
def test_a_verifying_pass_equals_one_token_steps_bit_for_bit(style, setting):
    model, _ = tiny_random(style, seed=1, **SETTINGS[setting])
    g = torch.Generator().manual_seed(2)
    prompt, new = torch.randint(0, 262144, (1, 20), generator=g), torch.randint(0, 262144, (1, 6), generator=g)
    logits, caches = [], []
    for together in (True, False):  # the window is 16: the 20-token prompt has already wrapped the rings
        cache = KVCache(model.config, 1, 64, dtype=model.dtype)
        with torch.no_grad():
            model(prompt, cache=cache, last_only=True)
            if together:
                with one_row_at_a_time():
                    logits.append(model(new, cache=cache))
            else:
                logits.append(torch.cat([model(new[:, i:i + 1], cache=cache) for i in range(6)], dim=1))
        caches.append(cache)
    assert torch.equal(*logits)
    assert caches_equal(*caches)


class Scripted:
    """A drafting object that knows the plain greedy text and spoils every second pass's third draft."""

    def __init__(self, truth, prompt_len):
        self.truth, self.prompt_len, self.passes = truth, prompt_len, 0

    def start(self, max_len):
        pass

    def propose(self, ids, hidden, cache, k, draw):
        self.passes += 1
        drafts = list(self.truth[len(ids) - self.prompt_len:][:k])
        if self.passes % 2 == 0 and len(drafts) >= 3:
            drafts[2] = (drafts[2] + 1) % 262144
        return drafts, [None] * len(drafts)

    def accepted(self, n):
        pass


@pytest.mark.parametrize("style,setting", [("gemma4-e2b", "bfloat16"), ("gemma4-26b-a4b", "int4"),
                                           ("gemma4-31b", "pack"), ("gemma4-26b-a4b", "float32")])
def test_speculative_text_equals_plain_greedy_with_accepted_and_rejected_drafts(style, setting):
    model, tokenizer = tiny_random(style, seed=3, **SETTINGS[setting])
    prompt = tokenizer.encode("Speculative decoding must not change a single token of this text.", add_bos=True)
    plain = list(generate_ids(model, prompt, max_new_tokens=30))
    stats = Stats()
    spec = list(speculative_ids(model, prompt, Scripted(plain, len(prompt)), 4, max_new_tokens=30, stats=stats))
    assert spec == plain
    assert stats.accepted > 0 and stats.accepted < stats.drafted  # some drafts kept, some thrown away


PROMPTS = ["Repeat this list: apple, banana, cherry, date, elderberry, fig, grape. Again: apple, banana,",
           "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n"]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_real_270m_speculative_text_equals_plain_greedy_in_every_setting(setting):
    model, tokenizer = minigemma.load("gemma3-270m", progress=False, **SETTINGS[setting])
    accepted = rejected = 0
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt, add_bos=True)
        plain = list(generate_ids(model, ids, max_new_tokens=24))
        stats = Stats()
        spec = list(speculative_ids(model, ids, PromptLookup(), 4, max_new_tokens=24, stats=stats))
        assert spec == plain, (setting, prompt)
        accepted, rejected = accepted + stats.accepted, rejected + stats.drafted - stats.accepted
    assert accepted > 0 and rejected > 0


def test_the_probe_finds_a_product_that_depends_on_the_row_count():
    torch.manual_seed(0)
    w = torch.randn(80, 64)
    rows = torch.randn(6, 64)
    exact = lambda x: torch.stack([(x[i, :, None] * w.T).sum(0) for i in range(len(x))])  # row by row by design
    uneven = lambda x: x @ w.T if len(x) == 1 else (x.double() @ w.T.double()).float()  # another sum for several
    assert row_invariant(exact, rows, ("test-exact",))
    assert not row_invariant(uneven, rows, ("test-uneven",))


def test_speculative_decoding_refuses_a_model_with_plain_linear_layers():
    model, tokenizer = tiny_random("gemma4-31b")
    plain = build_model(model.config, {k: v for k, v in model.state_dict().items() if not k.startswith(
        ("vision_tower.", "embed_vision."))})  # the text model as built, before load's swaps
    ids = tokenizer.encode("Hello", add_bos=True)
    with pytest.raises(ValueError, match="plain nn.Linear.*use_row_blocks"):
        list(generate_ids(plain, ids, max_new_tokens=4, assistant="prompt_lookup"))
