"""Run a real Gemma 4 checkpoint in a notebook cell, when the learner has one.

The course cannot download Gemma 4 (several GB from a model hub), so notebooks 06, 08, 09, 10 and 13
run random weights. Each of them ends its Gemma 4 part with one optional cell of the same shape:

    real = real_gemma4()                       # (model, tokenizer), or None after a one-line note
    if real:
        print(ask(*real, "Describe <|image|> in one sentence.", images=[...]))

(notebook 13: ``real_gemma4(assistant=True)`` and ``mtp_stats(*real, text)``, the drafter's acceptance).

Set ``MINIGEMMA_GEMMA4=path/to/gemma-4-e2b-it`` (a Hugging Face directory: ``config.json``,
``model.safetensors``, ``tokenizer.json``) before starting Jupyter to run these cells; notebook 13
also needs the MTP drafter, ``MINIGEMMA_GEMMA4_ASSISTANT=path/to/gemma-4-e2b-it-assistant``.
Without them each cell prints how to enable it and does nothing else.
"""

import os

import torch

import minigemma
from minigemma.chat import GEMMA3_NAMES, TURN_CLOSE, chat_format, render
from minigemma.speculative import Stats, speculative_ids

MODEL_VAR, ASSISTANT_VAR = "MINIGEMMA_GEMMA4", "MINIGEMMA_GEMMA4_ASSISTANT"


def real_gemma4(assistant=False, dtype=torch.bfloat16):
    """``(model, tokenizer)`` -- or ``(model, tokenizer, drafter)`` with ``assistant=True`` -- loaded
    from the directories the environment names; ``None``, after printing how to set them, otherwise.
    bfloat16 by default: a float32 E2B with its towers needs about 20 GB of memory, bfloat16 half."""
    needed = [MODEL_VAR] + ([ASSISTANT_VAR] if assistant else [])
    missing = [v for v in needed if not os.environ.get(v)]
    if missing:
        example = {MODEL_VAR: "path/to/gemma-4-e2b-it", ASSISTANT_VAR: "path/to/gemma-4-e2b-it-assistant"}
        print("Skipped (no real Gemma 4 here): set " + " and ".join(f"{v}={example[v]}" for v in missing)
              + " to run this cell.")
        return None
    model, tokenizer = minigemma.load(os.environ[MODEL_VAR], dtype=dtype, progress=False)
    if not assistant:
        return model, tokenizer
    drafter, _ = minigemma.load(os.environ[ASSISTANT_VAR], dtype=dtype, progress=False)
    return model, tokenizer, drafter


def ask(model, tokenizer, text, max_new_tokens=48, **media):
    """One user turn (``text`` may hold ``<|image|>``, ``<|video|>``, ``<|audio|>`` markers, filled by
    ``media``: ``images=``, ``videos=``, ``audio=``) -> the model's greedy answer, up to its turn's end."""
    fmt = chat_format(tokenizer)
    prompt = render([{"role": "user", "content": text}], format=fmt)
    stop = [TURN_CLOSE if fmt == "gemma4" else GEMMA3_NAMES[TURN_CLOSE]]
    return minigemma.generate(model, tokenizer, prompt, max_new_tokens=max_new_tokens, stop=stop, **media).strip()


def mtp_stats(model, tokenizer, drafter, text, num_draft_tokens=4, max_new_tokens=64):
    """Answer one user turn with speculative decoding (``drafter`` drafting ``num_draft_tokens`` per
    target pass) -> the ``Stats`` of the run: ``acceptance_rate``, ``tokens_per_pass``, ``rounds``."""
    prompt = render([{"role": "user", "content": text}], format=chat_format(tokenizer))
    stats = Stats()
    list(speculative_ids(model, tokenizer.encode(prompt, add_bos=True), drafter, num_draft_tokens,
                         max_new_tokens=max_new_tokens, stats=stats))
    return stats
