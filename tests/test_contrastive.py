"""The committed tiny embedding model (data/tiny_embed/, written by notebooks/contrastive.py) and its
pairs (data/pairs/) agree with each other and with the log notebook 16 quotes: the held-out recall@1
recomputed from the weights equals the log's, the pairs are the generator's, the files stay small."""

import json
import sys

import torch

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "notebooks"))  # the course code: the training script
import contrastive  # noqa: E402

OUT, PAIRS = ROOT / "data" / "tiny_embed", ROOT / "data" / "pairs"


def test_committed_files_are_small_and_the_vocabulary_is_the_pairs():
    assert sum(f.stat().st_size for f in OUT.iterdir()) < 3 * 2**20
    assert sum(f.stat().st_size for f in PAIRS.iterdir()) < 1 * 2**20
    model, tok, log = contrastive.load_tiny_embed(OUT)
    assert tok.gemma_ids == contrastive.make_tokenizer(PAIRS).gemma_ids  # every piece of the pairs, nothing else
    assert model.config.vocab_size == len(tok.gemma_ids) == log["vocab_size"]
    assert log["command"] == f"python notebooks/contrastive.py --steps {log['steps']} --seed {log['seed']}"


def test_pairs_are_the_generators_and_held_out_combinations_are_unseen():
    train, heldout = contrastive.en_fr_pairs()
    assert contrastive.read_pairs("en_fr", "train", PAIRS) == train
    assert contrastive.read_pairs("en_fr", "heldout", PAIRS) == heldout
    svo = lambda s: min((s.split(f" {p} ")[0] for p, _ in contrastive.PLACES), key=len)  # noqa: E731
    assert not {svo(q) for q, _ in heldout} & {svo(q) for q, _ in train}
    sections = json.loads((PAIRS / "sections.json").read_text(encoding="utf-8"))
    pairs = [(s["heading"], s["text"]) for s in sections]
    assert contrastive.read_pairs("sections", "heldout", PAIRS) == pairs[2::5]
    assert len(contrastive.read_pairs("sections", "train", PAIRS)) + len(pairs[2::5]) == len(pairs)


def test_recall_recomputed_from_the_weights_equals_the_log():
    model, tok, log = contrastive.load_tiny_embed(OUT)
    logged = {kind: {int(d): r for d, r in v.items()} for kind, v in log["recall_after"].items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script measured
    try:
        assert contrastive.measure(model, tok, PAIRS) == logged
    finally:
        torch.set_num_threads(threads)
    assert logged["en_fr"][768] > 0.9 > max(log["recall_before"]["en_fr"].values())  # training is what found them
    assert logged["en_fr"][8] > log["recall_control"]["en_fr"]["8"]  # Matryoshka: the short prefix works
