"""Train a tiny EmbeddingGemma contrastively, so that retrieval has something to show (notebook 16).

An embedding model is trained on *pairs*: a query and the text it should find. Each step embeds a
batch of pairs, and every query must pick its own partner out of all the partners in the batch
(the others are "in-batch negatives"): a softmax over cosine similarities divided by a temperature,
whose cross-entropy is the InfoNCE loss (Oord et al. 2018; SimCSE, Gao et al. 2021, uses the same
with temperature 0.05). Matryoshka training (MRL, Kusupati et al. 2022) adds the same loss on the
leading 512, 256, … 8 values of each vector, so that a truncated vector is a good embedding too.

Two kinds of pairs, written by ``write_pairs`` to ``data/pairs/`` (our own text, deterministic):

- ``en_fr``: an English sentence and its French translation, built from small lexicons (subject,
  verb, object, place, time). The held-out pairs are combinations of subject, verb and object that
  training never saw, so retrieving them needs word meanings, not memorised sentences. English and
  French share almost no tokens, so a random model cannot match them by spelling.
- ``sections``: a heading of the course's notebooks 00-14 and the first paragraph under it; every
  fifth section is held out. These also give the vocabulary that lets notebook 16 search the course.

    python notebooks/contrastive.py --write-pairs   # regenerate data/pairs/ (only if the lexicons change)
    python notebooks/contrastive.py                 # train; writes data/tiny_embed/ (a few minutes)

The model is ``minigemma.embedding.EmbeddingGemma`` with a tiny config and PyTorch's default random
init; its vocabulary is Gemma's cut down to the pieces in ``data/pairs/`` (``tiny_moe.TinyVocab``).
Course code, not part of the package (like ``tiny_moe.py``): notebook 16 and tests/test_contrastive.py
import it. Left out: hard negatives, distillation from a teacher and the spread-out regulariser that
EmbeddingGemma's own recipe adds (arXiv 2509.20354).
"""

import argparse
import json
import math
import random
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from minigemma.config import FULL, SLIDING, TextConfig
from minigemma.embedding import EmbeddingGemma, embed, pool
from minigemma.tokenizer import Tokenizer
from minigemma.weights import resolve
from tiny_moe import UNK, TinyVocab, save  # save: weights, config, the kept Gemma ids

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "data" / "pairs"
OUT = ROOT / "data" / "tiny_embed"
KINDS = ("en_fr", "sections")
MRL_DIMS = (768, 512, 256, 128, 64, 32, 16, 8)  # nested sizes trained and measured (768 = the full vector)
TEMPERATURE = 0.05
BATCH = {"en_fr": 64, "sections": 32}  # pairs per step (the sections are longer and fewer)

# --- the data ----------------------------------------------------------------------------------
# (English, French) pieces; a sentence is subject + verb + object + place + time.
SUBJECTS = [("the cat", "le chat"), ("the dog", "le chien"), ("the baker", "le boulanger"),
            ("the farmer", "le paysan"), ("the girl", "la fille"), ("the old woman", "la vieille femme"),
            ("the teacher", "le professeur"), ("the child", "l'enfant"), ("my neighbour", "mon voisin"),
            ("the captain", "le capitaine"), ("the doctor", "le médecin"), ("the bird", "l'oiseau")]
VERBS = [("sees", "voit"), ("finds", "trouve"), ("paints", "peint"), ("carries", "porte"), ("wants", "veut"),
         ("forgets", "oublie"), ("buys", "achète"), ("hides", "cache"), ("loves", "aime"), ("washes", "lave")]
OBJECTS = [("a red apple", "une pomme rouge"), ("the blue boat", "le bateau bleu"),
           ("an old book", "un vieux livre"), ("the small key", "la petite clé"), ("a green hat", "un chapeau vert"),
           ("the wooden chair", "la chaise en bois"), ("a letter", "une lettre"),
           ("the big clock", "la grande horloge"), ("a loaf of bread", "un pain"),
           ("the yellow bicycle", "le vélo jaune"), ("a cup of tea", "une tasse de thé"),
           ("the black umbrella", "le parapluie noir")]
PLACES = [("in the garden", "dans le jardin"), ("at the station", "à la gare"), ("near the river", "près de la rivière"),
          ("in the kitchen", "dans la cuisine"), ("at school", "à l'école"), ("on the bridge", "sur le pont"),
          ("in the market", "au marché"), ("at the beach", "à la plage"), ("under the tree", "sous l'arbre"),
          ("in the library", "à la bibliothèque")]
TIMES = [("every morning", "chaque matin"), ("on Sunday", "le dimanche"), ("at night", "la nuit"),
         ("today", "aujourd'hui"), ("in winter", "en hiver"), ("after lunch", "après le déjeuner")]
SKIP_HEADINGS = ("Exercises", "References", "Summary", "What you built", "What you learned")


def sentence(choice, lang):
    """(subject, verb, object, place, time) indices -> one sentence in ``lang`` (0 English, 1 French)."""
    s, v, o, p, t = (table[i][lang] for table, i in zip((SUBJECTS, VERBS, OBJECTS, PLACES, TIMES), choice))
    return f"{s[0].upper()}{s[1:]} {v} {o} {p} {t}."


def en_fr_pairs(n_train=2000, n_heldout=200, seed=0):
    """-> (train, heldout) lists of (English, French); no held-out (subject, verb, object) is in training."""
    rng = random.Random(seed)
    sizes = [len(t) for t in (SUBJECTS, VERBS, OBJECTS, PLACES, TIMES)]
    draw = lambda: tuple(rng.randrange(n) for n in sizes)  # noqa: E731
    heldout, held_svo = [], set()
    while len(heldout) < n_heldout:
        c = draw()
        if c[:3] not in held_svo:
            held_svo.add(c[:3])
            heldout.append(c)
    train, seen = [], set()
    while len(train) < n_train:
        c = draw()
        if c[:3] not in held_svo and c not in seen:
            seen.add(c), train.append(c)
    to_text = lambda cs: [(sentence(c, 0), sentence(c, 1)) for c in cs]  # noqa: E731
    return to_text(train), to_text(heldout)


def plain(markdown):
    """Markdown -> plain text: links keep their words, code spans their content, formulas go."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", markdown, flags=re.S)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[`*#>|]", "", text)
    return " ".join(text.split())


def notebook_sections(max_words=40):
    """-> [(notebook, heading, first paragraph)] for every ``## `` heading of notebooks 00-14.

    The paragraph is the first prose block under the heading (in the same markdown cell or the
    next one), cut to ``max_words`` words; bullet lists count as prose, tables and code do not."""
    out = []
    for path in sorted((ROOT / "notebooks" / "src").glob("*.py")):
        if not re.match(r"(0\d|1[0-4])", path.stem):
            continue
        cells = [c for c in path.read_text(encoding="utf-8").split("# %%") if c.startswith(" [markdown]")]
        for i, cell in enumerate(cells):
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in cell.splitlines()[1:]]
            for j, line in enumerate(lines):
                if not line.startswith("## "):
                    continue
                heading = re.sub(r"^## (\d+\.\s*)?", "", line).strip()
                if heading.startswith(SKIP_HEADINGS):
                    continue
                rest = lines[j + 1:] + (cells[i + 1].splitlines()[1:] if i + 1 < len(cells) else [])
                blocks = "\n".join(x[2:] if x.startswith("# ") else x.lstrip("#") for x in rest).split("\n\n")
                prose = [b for b in blocks if b.strip() and not b.lstrip().startswith(("|", "```", "$$", "##"))]
                if prose:
                    words = plain(prose[0]).split()
                    out.append((path.stem, plain(heading), " ".join(words[:max_words])))
    return out


def write_pairs(directory=PAIRS):
    """Write ``{kind}_{split}.tsv`` (query TAB document, one pair a line) and ``sections.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sections = notebook_sections()
    splits = {"en_fr": en_fr_pairs(),
              "sections": ([s[1:] for i, s in enumerate(sections) if i % 5 != 2],
                           [s[1:] for i, s in enumerate(sections) if i % 5 == 2])}
    for kind, (train, heldout) in splits.items():
        for split, pairs in (("train", train), ("heldout", heldout)):
            lines = [f"{a}\t{b}" for a, b in pairs]
            assert all(line.count("\t") == 1 for line in lines)
            (directory / f"{kind}_{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "sections.json").write_text(json.dumps(
        [{"notebook": n, "heading": h, "text": t} for n, h, t in sections], indent=0, ensure_ascii=False),
        encoding="utf-8")


def read_pairs(kind, split, directory=PAIRS):
    """-> [(query, document)] from ``data/pairs/{kind}_{split}.tsv``."""
    lines = (Path(directory) / f"{kind}_{split}.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines]


# --- the model ---------------------------------------------------------------------------------
class SmallTokenizer(TinyVocab):
    """Gemma's tokenizer with the small vocabulary, shaped as ``minigemma.embed`` wants a tokenizer."""

    def __init__(self, gemma_ids, tokenizer=None):
        super().__init__(gemma_ids, tokenizer)
        self.bos_id, self.eos_id = self.small[self.tokenizer.bos_id], self.small[self.tokenizer.eos_id]
        self.pad_id = UNK

    def encode(self, text, add_bos=False):
        return ([self.bos_id] if add_bos else []) + super().encode(text)


def make_tokenizer(directory=PAIRS):
    """The small vocabulary: <unk>, <bos>, <eos>, then every Gemma piece of ``data/pairs/`` in id order."""
    gemma = Tokenizer.from_file(resolve("gemma3-270m"))
    texts = [t for kind in KINDS for split in ("train", "heldout") for pair in read_pairs(kind, split, directory)
             for t in pair]
    used = sorted({i for t in texts for i in gemma.encode(t)} | {gemma.bos_id, gemma.eos_id})
    return SmallTokenizer([-1] + used, gemma)


def tiny_config(vocab_size):
    """4 bidirectional layers (3 sliding with radius 8, 1 global), width 64, output 768 as the real model's."""
    return TextConfig(
        model_type="embedding_gemma2_text", vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=32,
        num_global_key_value_heads=1, sliding_window=8, layer_types=(SLIDING, SLIDING, SLIDING, FULL),
        max_position_embeddings=256, hidden_size_per_layer_input=16, embedding_dim=768,
        rope_parameters={FULL: {"rope_type": "default", "rope_theta": 1e6},
                         SLIDING: {"rope_type": "default", "rope_theta": 1e4}})


def new_model(vocab_size, seed=0):
    """A random tiny EmbeddingGemma (PyTorch's default init: norms 1, linears Kaiming-uniform)."""
    torch.manual_seed(seed)
    return EmbeddingGemma(tiny_config(vocab_size))


# --- the loss ----------------------------------------------------------------------------------
def batch_ids(tokenizer, texts):
    """texts -> ids (B, T) and mask (B, T): ``<bos> text <eos>``, right-padded, as ``embed`` does."""
    rows = [[tokenizer.bos_id] + tokenizer.encode(t) + [tokenizer.eos_id] for t in texts]
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])  # (B, T)
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])  # (B, T)
    return ids, mask


def info_nce(a, b, temperature=TEMPERATURE):
    """a, b: (B, d) unit vectors, row i of a paired with row i of b -> the symmetric InfoNCE loss:
    cross-entropy of picking the partner among the B candidates, both ways (a->b and b->a)."""
    logits = a @ b.T / temperature  # (B, B): cosine similarities, sharpened
    target = torch.arange(a.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def mrl_loss(a, b, dims=MRL_DIMS, temperature=TEMPERATURE):
    """a, b: (B, E) pooled vectors -> the mean InfoNCE over the nested sizes (each truncated, renormalised)."""
    return sum(info_nce(F.normalize(a[:, :d], dim=-1), F.normalize(b[:, :d], dim=-1), temperature)
               for d in dims) / len(dims)


def pooled(model, tokenizer, texts):
    """texts -> (B, E) mean-pooled per-token outputs (with gradients; not normalised)."""
    ids, mask = batch_ids(tokenizer, texts)
    return pool(model(ids, mask), mask)


# --- the measurement ---------------------------------------------------------------------------
@torch.no_grad()
def recall_at_1(model, tokenizer, pairs, dims=MRL_DIMS):
    """-> {dim: fraction of queries whose nearest document (cosine, among all the pairs' documents)
    is their own}. The vectors are ``minigemma.embed``'s, truncated and renormalised at each size."""
    model.eval()
    q = embed(model, tokenizer, [a for a, _ in pairs], batch_size=64)  # (N, E)
    d = embed(model, tokenizer, [b for _, b in pairs], batch_size=64)  # (N, E)
    out = {}
    for dim in dims:
        scores = F.normalize(q[:, :dim], dim=-1) @ F.normalize(d[:, :dim], dim=-1).T  # (N, N)
        out[dim] = round((scores.argmax(1) == torch.arange(len(pairs))).float().mean().item(), 4)
    return out


def measure(model, tokenizer, directory=PAIRS):
    """-> {kind: {dim: held-out recall@1}}."""
    return {kind: recall_at_1(model, tokenizer, read_pairs(kind, "heldout", directory)) for kind in KINDS}


# --- training ----------------------------------------------------------------------------------
def train(model, tokenizer, steps=120, batch=BATCH, lr=2e-3, dims=MRL_DIMS, seed=0, progress=True, directory=PAIRS,
          kinds=KINDS):
    """AdamW on the MRL InfoNCE loss; each step one kind's batch (``kinds`` in turn) -> list of losses."""
    from tqdm.auto import tqdm

    data = {kind: read_pairs(kind, "train", directory) for kind in kinds}
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses = []
    bar = tqdm(range(steps), desc="training", disable=not progress)
    for step in bar:
        model.train()
        kind = kinds[step % len(kinds)]
        pairs = rng.sample(data[kind], batch[kind])
        a = pooled(model, tokenizer, [p[0] for p in pairs])  # (B, E)
        b = pooled(model, tokenizer, [p[1] for p in pairs])  # (B, E)
        loss = mrl_loss(a, b, dims)
        opt.zero_grad()
        loss.backward()
        for g in opt.param_groups:  # a short warm-up, then a cosine decay to 10 %
            g["lr"] = lr * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        opt.step()
        losses.append(round(loss.item(), 4))
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def load_tiny_embed(directory=OUT):
    """-> (model, tokenizer, log): the committed tiny embedding model."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = TextConfig.from_dict(json.loads((directory / "config.json").read_text()))
    model = EmbeddingGemma(config)
    model.load_state_dict(load_file(directory / "model.safetensors"))
    tokenizer = SmallTokenizer(json.loads((directory / "vocab.json").read_text()))
    log = json.loads((directory / "log.json").read_text()) if (directory / "log.json").exists() else {}
    return model.eval(), tokenizer, log


def run(steps=120, seed=0, out=OUT, progress=True):
    """Train the MRL model (saved) and a control trained at the full size only (log only)."""
    tokenizer = make_tokenizer()
    log = {"command": f"python notebooks/contrastive.py --steps {steps} --seed {seed}", "seed": seed,
           "steps": steps, "batch": BATCH, "lr": 2e-3, "temperature": TEMPERATURE, "dims": list(MRL_DIMS),
           "vocab_size": len(tokenizer.gemma_ids),
           "pairs": {kind: {split: len(read_pairs(kind, split)) for split in ("train", "heldout")} for kind in KINDS}}
    model = new_model(len(tokenizer.gemma_ids), seed)
    log["recall_before"] = measure(model, tokenizer)
    start = time.time()
    log["losses"] = train(model, tokenizer, steps, seed=seed, progress=progress)
    log["seconds"] = round(time.time() - start)
    save(model, tokenizer, out)  # tiny_moe.save: the tokenizer's gemma_ids are the vocabulary
    log["recall_after"] = measure(load_tiny_embed(out)[0], tokenizer)  # as a reader reloads it
    control = new_model(len(tokenizer.gemma_ids), seed)
    log["control_losses"] = train(control, tokenizer, steps, dims=(MRL_DIMS[0],), seed=seed, progress=progress)
    log["recall_control"] = measure(control, tokenizer)
    (Path(out) / "log.json").write_text(json.dumps(log, indent=1))
    return log


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster for this tiny model)")
    parser.add_argument("--write-pairs", action="store_true", help="regenerate data/pairs/ first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.write_pairs:
        write_pairs()
    log = run(args.steps, args.seed, args.out)
    print(json.dumps({k: log[k] for k in ("recall_before", "recall_after", "recall_control", "seconds")}))
