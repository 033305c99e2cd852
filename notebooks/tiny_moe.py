"""Train a tiny Gemma-4-style mixture of experts on CPU, so routing has something to show.

A router with random weights does not route at random: it sends each token deterministically
wherever its random projection points, so even an untrained router has "favourite" experts for
each language, simply because each language uses its own tokens. Routing claims therefore need
a baseline: ``with_untrained_routers`` gives the trained model with its routers re-initialised,
and ``kind_information`` measures how much the chosen experts tell about the kind of text.

This script trains a 4-layer model with the real MoE block (16 experts, top-2, beside a dense
MLP) on four kinds of text in ``data/moe_corpus/``: English and French prose (a few hand-written
paragraphs plus text sampled from the real Gemma 3 270M, see ``write_gemma_text``), Python code
and arithmetic. Notebook 07 compares its routing with the untrained-router baseline.

    python notebooks/tiny_moe.py --steps 150 --seed 0   # about a minute on 2 idle cores; writes data/tiny_moe/
    python notebooks/tiny_moe.py --write-gemma-text     # first re-sample the Gemma text (slow)
    python notebooks/tiny_moe.py --clean-gemma-text     # first clean the committed Gemma text in place

Course code, not part of the ``minigemma`` package: it holds prompts and a training loop and reads
``data/`` beside ``notebooks/`` in this repository. Notebooks 06b and 07 import it (they run in
``notebooks/``), as do tests/test_moe.py and notebooks/checks.py (with ``notebooks/`` on sys.path).

The vocabulary is Gemma's, cut down to the pieces that occur in the corpus (the checkpoint keeps
the list of original ids), so the embedding stays small and the checkpoint is a few MB. Training
adds the usual load-balancing loss (Switch Transformer, Fedus et al. 2021) so that no expert
starves; Gemma's own recipe is not public and is not claimed here.
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
from minigemma.decoder import Gemma
from minigemma.tokenizer import Tokenizer
from minigemma.weights import build_model, resolve

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "moe_corpus"
OUT = ROOT / "data" / "tiny_moe"
KINDS = ("english", "french", "python", "arithmetic")
UNK = 0  # id 0 of the small vocabulary: any piece that did not occur in the corpus


class TinyVocab:
    """Gemma's tokenizer plus a map from Gemma ids to the small vocabulary and back."""

    def __init__(self, gemma_ids, tokenizer=None):
        self.gemma_ids = list(gemma_ids)  # small id -> Gemma id (index 0 is <unk>)
        self.small = {g: i for i, g in enumerate(self.gemma_ids) if i != UNK}
        self.tokenizer = tokenizer or Tokenizer.from_file(resolve("gemma3-270m"))

    def encode(self, text):
        return [self.small.get(i, UNK) for i in self.tokenizer.encode(text)]

    def decode(self, ids):
        return self.tokenizer.decode([self.gemma_ids[i] for i in ids if i != UNK])

    def pieces(self, ids):
        return ["<unk>" if i == UNK else self.tokenizer.decode([self.gemma_ids[i]]) for i in ids]


PROMPTS = {  # openings for the real Gemma 3 270M to continue (see write_gemma_text)
    "english": ["The old lighthouse keeper", "In the spring of that year", "My grandmother used to say",
                "The train was late again", "Scientists have long wondered", "At the edge of the forest",
                "The recipe calls for", "When the storm finally passed", "Every morning the baker",
                "The history of the city", "She opened the letter and", "The river runs through",
                "Our school organised a trip", "The museum was quiet", "After the long winter",
                "The market square was full", "He had never seen the sea", "The children ran across",
                "A good night's sleep", "The farmer looked at the sky", "On the first day of school",
                "The village had one small", "Learning a new language", "The ship left the harbour",
                "In a small town near the", "The garden behind the house", "Music has always been",
                "The cat sat on the", "It was the coldest night", "The mountain road was narrow",
                "Our neighbour is a", "The library opens at"],
    "french": ["Il était une fois", "Le vieux gardien du phare", "Au printemps de cette année",
               "Ma grand-mère disait souvent", "Le train avait encore du retard", "À la lisière de la forêt",
               "Pour cette recette, il faut", "Quand l'orage fut enfin passé", "Chaque matin, le boulanger",
               "L'histoire de la ville", "Elle ouvrit la lettre et", "La rivière traverse",
               "Notre école a organisé", "Le musée était silencieux", "Après le long hiver",
               "La place du marché était", "Il n'avait jamais vu la mer", "Les enfants couraient",
               "Une bonne nuit de sommeil", "Le paysan regarda le ciel", "Le premier jour d'école",
               "Le village avait une petite", "Apprendre une nouvelle langue", "Le bateau quitta le port",
               "Dans une petite ville près de", "Le jardin derrière la maison", "La musique a toujours",
               "Le chat était assis sur", "C'était la nuit la plus froide", "La route de montagne",
               "Notre voisin est un", "La bibliothèque ouvre à"],
}


@torch.no_grad()
def write_gemma_text(kind, new_tokens=160, seed=0, top_k=64):
    """Sample one continuation of each prompt of ``kind`` from the real Gemma 3 270M -> text.

    All prompts are cut to the same number of tokens so that they run as one batch (one KV cache
    of batch 32); temperature 1 and top-k 64, with a seeded generator, so the text is reproducible.
    """
    from minigemma.cache import KVCache
    from minigemma.weights import load

    model, tok = load("gemma3-270m", progress=False)
    prompts = [tok.encode(p, add_bos=True) for p in PROMPTS[kind]]
    n = min(len(p) for p in prompts)
    ids = torch.tensor([p[:n] for p in prompts])  # (B, n)
    cache = KVCache(model.config, ids.shape[0], n + new_tokens)
    gen, rows = torch.Generator().manual_seed(seed), [ids[:, 1:]]
    for _ in range(new_tokens):
        top = model(ids, cache=cache, last_only=True)[:, -1].float().topk(top_k)  # (B, k)
        ids = top.indices.gather(1, torch.multinomial(top.values.softmax(-1), 1, generator=gen))  # (B, 1)
        rows.append(ids)
    texts = []
    for row in torch.cat(rows, 1).tolist():  # stop each text at its end-of-text token
        row = row[:row.index(tok.eos_id)] if tok.eos_id in row else row
        texts.append(tok.decode(row).replace("\u2028", "\n").strip())  # U+2028: a line separator
    return clean_gemma_text("\n\n".join(texts) + "\n")


def clean_gemma_text(text):
    """Sampled text -> plain prose: every ``<start_of_image>`` becomes a line break, HTML tags go.

    The base 270M learned from web pages, so its stories carry ``<strong>``, ``<h2>`` and the like,
    and it now and then samples its image placeholder token between paragraphs (issue #22)."""
    text = re.sub(r"</?[a-zA-Z][a-zA-Z0-9]*>", "", text.replace("<start_of_image>", "\n"))
    return re.sub(r"\n{3,}", "\n\n", text)


def tiny_config(vocab_size):
    return TextConfig(
        model_type="gemma4_text", vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=16, global_head_dim=32,
        sliding_window=64, layer_types=(SLIDING, SLIDING, SLIDING, FULL), max_position_embeddings=256,
        final_logit_softcapping=30.0, enable_moe_block=True, num_experts=16, top_k_experts=2,
        moe_intermediate_size=64,
        rope_parameters={FULL: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
                         SLIDING: {"rope_type": "default", "rope_theta": 1e4}})


def read_corpus(tokenizer):
    """kind -> (train ids, validation ids) in Gemma ids; the last 10 % of each text is held out.

    A kind's text is ``{kind}.txt`` followed by ``{kind}_gemma3_270m.txt`` when that exists."""
    out = {}
    for kind in KINDS:
        files = [CORPUS / f"{kind}.txt", CORPUS / f"{kind}_gemma3_270m.txt"]
        ids = tokenizer.encode("\n".join(f.read_text(encoding="utf-8") for f in files if f.exists()))
        cut = int(len(ids) * 0.9)
        out[kind] = (ids[:cut], ids[cut:])
    return out


def init_weights(model, std=0.02, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("router.scale") or "per_expert_scale" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def batches(data, batch, seq, rng):
    """Each row: a random window from a random kind, so the four kinds are equally represented."""
    while True:
        rows = []
        for _ in range(batch):
            ids = data[rng.choice(KINDS)]
            start = rng.randrange(0, len(ids) - seq - 1)
            rows.append(ids[start:start + seq + 1])
        yield torch.tensor(rows)


def router_outputs(model):
    """Hooks that collect (weights, index, probs) of every router call -> (list, remove function)."""
    seen = []
    handles = [layer.router.register_forward_hook(lambda m, i, o: seen.append(o)) for layer in model.layers]
    return seen, lambda: [h.remove() for h in handles]


def balance_loss(routed, num_experts):
    """Switch-style: E · Σ_e (fraction of choices that went to e) · (mean router probability of e)."""
    total = 0.0
    for _, index, probs in routed:
        share = torch.bincount(index.reshape(-1), minlength=num_experts).float() / index.numel()
        total = total + num_experts * (share * probs.mean(0)).sum()
    return total / len(routed)


@torch.no_grad()
def evaluate(model, data, seq=32):
    """Mean next-token loss on each kind's held-out text, in fixed windows (deterministic)."""
    model.eval()
    losses = {}
    for kind, ids in data.items():
        rows = [ids[s:s + seq + 1] for s in range(0, len(ids) - seq - 1, seq)]
        x = torch.tensor(rows)
        logits = model(x[:, :-1])
        losses[kind] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).item()
    return losses


def train(steps=150, batch=16, seq=96, lr=3e-3, seed=0, out=OUT, progress=True):
    torch.manual_seed(seed)
    tokenizer = Tokenizer.from_file(resolve("gemma3-270m"))
    corpus = read_corpus(tokenizer)
    used = sorted({i for train_ids, val_ids in corpus.values() for i in train_ids + val_ids})
    vocab = TinyVocab([-1] + used, tokenizer)
    data = {k: [vocab.small[i] for i in tr] for k, (tr, _) in corpus.items()}
    val = {k: [vocab.small[i] for i in va] for k, (_, va) in corpus.items()}
    config = tiny_config(len(vocab.gemma_ids))
    model = Gemma(config)
    init_weights(model, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    stream = batches(data, batch, seq, rng)
    routed, remove = router_outputs(model)
    history = []
    from tqdm.auto import tqdm

    bar = tqdm(range(steps), desc="training", disable=not progress)
    start = time.time()
    for step in bar:
        model.train()
        x = next(stream)
        routed.clear()
        logits = model(x[:, :-1])
        lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        loss = lm + 0.01 * balance_loss(routed, config.num_experts)
        opt.zero_grad()
        loss.backward()
        for g in opt.param_groups:  # cosine decay to 10 %
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        opt.step()
        history.append(round(lm.item(), 4))
        bar.set_postfix(loss=f"{lm.item():.3f}")
    remove()
    save(model, vocab, out)
    log = {"command": f"python notebooks/tiny_moe.py --steps {steps} --seed {seed}",
           "seed": seed, "steps": steps, "batch": batch, "seq": seq, "lr": lr,
           "seconds": round(time.time() - start), "train_loss": history,
           # measured on the saved checkpoint, as a reader will reload it
           "validation_loss": {k: round(v, 4) for k, v in evaluate(load_tiny_moe(out)[0], val).items()}}
    (Path(out) / "train_log.json").write_text(json.dumps(log, indent=1))
    return model, vocab


def save(model, vocab, out):
    from dataclasses import asdict

    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(asdict(model.config), indent=1))
    (out / "vocab.json").write_text(json.dumps(vocab.gemma_ids))


def load_tiny_moe(directory=OUT):
    """-> (model, vocab, log): the committed tiny MoE, ready to route your text."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = TextConfig.from_dict(json.loads((directory / "config.json").read_text()))
    model = build_model(config, load_file(directory / "model.safetensors"))
    vocab = TinyVocab(json.loads((directory / "vocab.json").read_text()))
    log = json.loads((directory / "train_log.json").read_text()) if (directory / "train_log.json").exists() else {}
    return model, vocab, log


def expert_shares(model, ids_by_kind):
    """-> for every layer, {kind: (E,) fraction of that kind's tokens that chose each expert}.

    Every token chooses top-k experts, so a kind's fractions sum to k (2 here), not to 1."""
    from minigemma.viz import routing

    maps = {kind: routing(model, torch.tensor([ids])) for kind, ids in ids_by_kind.items()}  # kind -> [(T, E)]
    return [{kind: (m[layer] > 0).float().mean(0) for kind, m in maps.items()} for layer in range(len(model.layers))]


def kind_information(shares):
    """{kind: (E,) shares} -> mutual information, in bits, between the kind of text and the expert
    chosen (kinds weighted equally). 0: the experts say nothing about the kind; log2(kinds): everything."""
    joint = torch.stack([s / s.sum() for s in shares.values()]) / len(shares)  # (kinds, E), sums to 1
    independent = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)  # p(kind) · p(expert)
    terms = joint * torch.log2(joint / independent)
    return float(torch.where(joint > 0, terms, torch.zeros_like(terms)).sum())


def with_untrained_routers(model, seed, std=0.02):
    """A copy of ``model`` whose routers are re-initialised as before training (projection
    N(0, std²), scales 1): the same trained residual stream, routed by weights that learned nothing."""
    import copy

    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in twin.layers:
            layer.router.proj.weight.copy_(torch.randn(layer.router.proj.weight.shape, generator=gen) * std)
            layer.router.scale.fill_(1.0)
            layer.router.per_expert_scale.fill_(1.0)
    return twin


def validation_data(vocab):
    """The held-out windows, in small ids, exactly as training evaluated them."""
    corpus = read_corpus(vocab.tokenizer)
    return {k: [vocab.small.get(i, UNK) for i in va] for k, (_, va) in corpus.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a busy machine)")
    parser.add_argument("--clean-gemma-text", action="store_true",
                        help="first pass the committed data/moe_corpus/*_gemma3_270m.txt through clean_gemma_text")
    parser.add_argument("--write-gemma-text", action="store_true",
                        help="first sample data/moe_corpus/{english,french}_gemma3_270m.txt from Gemma 3 270M")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for kind in ("english", "french") if args.write_gemma_text or args.clean_gemma_text else ():
        path = CORPUS / f"{kind}_gemma3_270m.txt"
        text = write_gemma_text(kind) if args.write_gemma_text else clean_gemma_text(path.read_text(encoding="utf-8"))
        path.write_text(text, encoding="utf-8")
    train(steps=args.steps, seed=args.seed, out=args.out)
    print(json.dumps(json.loads((Path(args.out) / "train_log.json").read_text())["validation_loss"]))
