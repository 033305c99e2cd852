"""notebooks/real_weights.py: the optional "run it on the real model" cells of notebooks 06, 08, 09, 10
and 13. Without the environment variables a cell prints one note and does nothing (what nbval sees);
with them it loads the directories they name -- here tiny random checkpoints in the Hugging Face
layout: a tiny E2B exported by ``minigemma.save_pretrained``, and an MTP assistant saved by transformers."""

import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import minigemma
from minigemma.tiny import tiny_drafter_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
from real_weights import ASSISTANT_VAR, MODEL_VAR, ask, mtp_stats, real_gemma4  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1] / "data" / "media"


@pytest.fixture(scope="module")
def tiny():
    return minigemma.tiny_random("gemma4-e2b", seed=0)


@pytest.fixture(scope="module")
def target_dir(tiny, tmp_path_factory):
    return minigemma.save_pretrained(*tiny, tmp_path_factory.mktemp("gemma4-tiny"))


@pytest.fixture(scope="module")
def assistant_dir(tmp_path_factory):
    """A random assistant that fits the tiny E2B (same head sizes, backbone width), saved by transformers."""
    from transformers import Gemma4AssistantConfig, Gemma4AssistantForCausalLM, Gemma4TextConfig

    ours = tiny_drafter_config("gemma4-e2b")
    text = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(ours.text_config).items()
            if v is not None and k != "model_type"}
    torch.manual_seed(0)
    hf = Gemma4AssistantForCausalLM(Gemma4AssistantConfig(
        text_config=Gemma4TextConfig(**{**text, "num_kv_shared_layers": text["num_hidden_layers"],
                                        "vocab_size_per_layer_input": 0}),
        backbone_hidden_size=ours.backbone_hidden_size, use_ordered_embeddings=True, num_centroids=2048,
        centroid_intermediate_top_k=32)).eval()
    directory = tmp_path_factory.mktemp("assistant")
    hf.save_pretrained(directory)
    return directory


def test_unset_prints_one_note_and_returns_none(monkeypatch, capsys):
    monkeypatch.delenv(MODEL_VAR, raising=False)
    monkeypatch.delenv(ASSISTANT_VAR, raising=False)
    assert real_gemma4() is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"{MODEL_VAR}=path/to/gemma-4-e2b-it" in out and ASSISTANT_VAR not in out
    assert real_gemma4(assistant=True) is None
    assert ASSISTANT_VAR in capsys.readouterr().out


def test_missing_assistant_alone_is_named(monkeypatch, capsys, target_dir):
    monkeypatch.setenv(MODEL_VAR, str(target_dir))
    monkeypatch.delenv(ASSISTANT_VAR, raising=False)
    assert real_gemma4(assistant=True) is None
    out = capsys.readouterr().out
    assert ASSISTANT_VAR in out and f"{MODEL_VAR}=" not in out


def test_set_loads_the_checkpoint_and_the_cells_run(monkeypatch, tiny, target_dir):
    monkeypatch.setenv(MODEL_VAR, str(target_dir))
    model, tok = real_gemma4(dtype=torch.float32)
    assert model.config.num_hidden_layers == tiny[0].config.num_hidden_layers
    # the cells of 06, 08 and 10 (09's differs from 08's only in videos=): same answer as the model in memory
    media = [dict(), dict(images=[minigemma.preprocess_image(MEDIA / "photo.jpg", max_soft_tokens=70)]),
             dict(audio=[minigemma.audio_features(MEDIA / "clip.wav")])]
    for text, kw in zip(["Hello", "Describe <|image|>.", "Transcribe: <|audio|>"], media):
        answer = ask(model, tok, text, max_new_tokens=4, **kw)
        assert isinstance(answer, str) and answer == ask(*tiny, text, max_new_tokens=4, **kw)
    assert real_gemma4()[0].dtype == torch.bfloat16  # the default: half the memory of float32


def test_set_with_assistant_measures_acceptance(monkeypatch, target_dir, assistant_dir):
    monkeypatch.setenv(MODEL_VAR, str(target_dir))
    monkeypatch.setenv(ASSISTANT_VAR, str(assistant_dir))
    model, tok, drafter = real_gemma4(assistant=True, dtype=torch.float32)
    stats = mtp_stats(model, tok, drafter, "Count to ten.", max_new_tokens=12)
    assert stats.rounds and 0 <= stats.acceptance_rate <= 1 and stats.tokens_per_pass >= 1
