"""Test-only references that the package does not need at run time."""

import torch

from minigemma.quant_layers import Int4Linear, Int8Linear, QuantExperts


def dequantized_copy_state(model):
    """The float state dict a quantised model stands for: every quantised weight dequantised
    (the reference that its packed kernels must match within rounding)."""
    state, quantized = {}, set()
    experts = [name for name, module in model.named_modules() if isinstance(module, QuantExperts)]
    for name in experts:
        module = model.get_submodule(name)
        state[name + ".gate_up_proj"] = torch.stack([layer.dequantized() for layer in module.gate_up])
        state[name + ".down_proj"] = torch.stack([layer.dequantized() for layer in module.down])
    for name, module in model.named_modules():
        if any(name.startswith(e + ".") for e in experts):
            quantized.add(name)  # their float form is the stacked tensors above
            continue
        if isinstance(module, (Int8Linear, Int4Linear)):
            quantized.add(name)
            owner = name[:-len(".table")] if name.endswith(".table") else name
            state[owner + ".weight"] = module.dequantized()
    for name, t in model.state_dict().items():
        if name.rpartition(".")[0] not in quantized:
            state[name] = t.float()
    return state
