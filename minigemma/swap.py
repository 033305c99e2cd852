"""Post-load module swaps: how speed and training tricks change a loaded model without touching its code.

The model code (``decoder.py``, ``attention.py``, ``mlp.py`` …) is plain PyTorch: every projection
is an ``nn.Linear``, the embedding an ``nn.Embedding``. Anything that computes the same layer
*differently* -- a faster kernel for one token (``rowblocks.py``), weights reordered for oneDNN
(``pack.py``), int8/int4 weights (``quantize.py``), low-rank adapters for fine-tuning -- is a
module that replaces a layer after loading, as gpt-fast does with its int8 ``WeightOnlyInt8Linear``.
``swap_modules`` is the one walk they all use: the model's code stays the same, and reading it
never requires knowing which trick is on.

Only the text decoder is swapped: the vision and audio towers (``TOWERS``) run once per image or
clip, not once per generated token, so their speed and size matter much less.
"""

from torch import nn

# attribute names on the model (vision_embedder: the unified model's, unified.py)
TOWERS = ("vision_tower", "embed_vision", "audio_tower", "embed_audio", "vision_embedder")


def decoder_modules(model: nn.Module):
    """Yield ``(name, module)`` for every module of the text decoder (the towers left out)."""
    for name, module in model.named_modules():
        if name and name.split(".")[0] not in TOWERS:
            yield name, module


def swap_modules(model: nn.Module, replace) -> int:
    """Replace decoder modules in place: ``replace(name, module)`` returns the new module, or None
    to keep the old one. A replaced module's children are not visited. Returns how many were swapped."""
    swapped = []
    for name, module in list(decoder_modules(model)):
        if any(name.startswith(done + ".") for done in swapped):
            continue  # inside a module that was just replaced
        new = replace(name, module)
        if new is None or new is module:
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
        swapped.append(name)
    return len(swapped)
