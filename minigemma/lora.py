"""LoRA: fine-tune a big model by training two thin matrices beside each frozen weight.

Fine-tuning changes a pretrained weight ``W`` (out, in) by some ``ΔW``. Hu et al. (2021,
https://arxiv.org/abs/2106.09685) observed that the useful ``ΔW`` has a low *intrinsic rank*, so
they train it in factored form, ``ΔW = B @ A`` with ``A``: (r, in) and ``B``: (out, r), r ≪ in:

    y = x Wᵀ + (alpha / r) · (x Aᵀ) Bᵀ

* ``W`` stays frozen (it may even be int8/int4: QLoRA, Dettmers et al. 2023,
  https://arxiv.org/abs/2305.14314): gradients flow *through* it to the layers below, but only
  ``A`` and ``B`` are updated, so the optimiser keeps state for r·(in + out) numbers per layer
  instead of in·out.
* ``B`` starts at zero, so at step 0 the model is exactly the base model; ``A`` starts random
  (Kaiming-uniform, as PEFT does), otherwise both gradients would be zero forever.
* ``alpha / r`` scales the update, so changing r does not change how big a step is.

Adapters are a post-load swap (``swap.py``): ``add_lora`` wraps the chosen ``nn.Linear`` layers of
the text decoder in ``LoRALinear``, whatever they became after loading (row blocks, int8, int4);
the model code does not change. ``save_adapter`` / ``load_adapter`` read and write PEFT's LoRA
format (https://huggingface.co/docs/peft), with the tensor names PEFT gives the transformers class
the model came from (``weights.origin_of``), so an adapter moves between minigemma, peft and
transformers in both directions. ``merge`` folds ``B @ A`` into ``W`` for a plain model again.

Left out: LoRA on the vision/audio towers, on the embeddings, on the mixture-of-experts experts
(3-D weights) and router; DoRA, bias training, and per-module ranks (``rank_pattern``).
"""

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .row_exact import row_product
from .swap import TOWERS, swap_modules
from .weights import HF_TEXT_PREFIXES, CheckpointError, origin_of

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # attention + dense MLP
PEFT_PREFIX = "base_model.model."  # PEFT's wrapper around the transformers model


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: ``base(x) + scaling · B(A(dropout(x)))``.

    ``base_layer`` is whatever the loaded model had (``nn.Linear``, a row-block or quantised layer);
    the adapters are float32 whatever the activations' dtype, as PEFT keeps them by default.
    """

    def __init__(self, base_layer, r, alpha, dropout=0.0, generator=None, use_rslora=False):
        super().__init__()
        self.base_layer = base_layer
        d_in, d_out = base_layer.in_features, base_layer.out_features
        self.in_features, self.out_features, self.r = d_in, d_out, r
        self.lora_A = nn.Linear(d_in, r, bias=False, dtype=torch.float32)  # weight (r, in)
        self.lora_B = nn.Linear(r, d_out, bias=False, dtype=torch.float32)  # weight (out, r)
        with torch.no_grad():  # PEFT's init: A ~ Kaiming-uniform(a=√5) (nn.Linear's), B = 0
            bound = 1 / math.sqrt(d_in)  # what kaiming_uniform_(a=√5) gives for fan_in = d_in
            self.lora_A.weight.uniform_(-bound, bound, generator=generator)
            self.lora_B.weight.zero_()
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x):  # (..., in) -> (..., out)
        y = self.base_layer(x)
        key = ("lora", self.in_features, self.r, self.out_features, x.dtype)
        update = row_product(self.low_rank, x, self.in_features, key)  # (..., out)
        return y + (self.scaling * update).to(y.dtype)

    def low_rank(self, x):  # (..., in) -> (..., out) float32, through rank r
        return self.lora_B(self.lora_A(self.dropout(x.to(torch.float32))))

    def delta(self):
        """The update the adapters add to the weight: scaling · B @ A, (out, in) float32."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    def extra_repr(self):
        return f"r={self.r}, scaling={self.scaling:g}"


def lora_layers(model) -> dict:
    """name -> LoRALinear, for every adapted layer of the model."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def add_lora(model, r=8, alpha=16, target_modules=TARGETS, dropout=0.0, seed=0, use_rslora=False):
    """Wrap the text decoder's ``target_modules`` (layer names, e.g. ``q_proj``) in ``LoRALinear``,
    in place; freeze everything else. Returns the model. ``seed`` fixes ``A``'s random start."""
    if r < 1:
        raise ValueError(f"the LoRA rank r must be at least 1, got {r}")
    if lora_layers(model):
        raise ValueError("the model already has LoRA adapters (merge(model) them first, or load a fresh model)")
    generator = torch.Generator().manual_seed(seed)
    model.requires_grad_(False)

    def replace(name, module):
        if name.split(".")[-1] not in target_modules:
            return None
        if not hasattr(module, "in_features"):
            return None  # e.g. a mixture-of-experts' experts hold 3-D weights, not a linear layer
        if type(module).__name__ == "PackedLinear":
            raise ValueError("pack=True weights are packed for decoding and cannot be trained through: "
                             "load the model without pack= to add adapters")
        return LoRALinear(module, r, alpha, dropout, generator, use_rslora)

    if swap_modules(model, replace) == 0:
        raise ValueError(f"no layer of the text decoder is called any of {list(target_modules)}")
    model.lora_config = {"r": r, "lora_alpha": alpha, "target_modules": list(target_modules),
                         "lora_dropout": dropout, "use_rslora": use_rslora}
    return model


def trainable_parameters(model) -> list:
    """The adapters' parameters: what the optimiser updates."""
    return [p for p in model.parameters() if p.requires_grad]


def merge(model):
    """Fold every adapter into its base weight (``W += scaling · B @ A``) and put the plain layer
    back, in place; the merged model computes the same function without the extra products."""
    def replace(name, module):
        if not isinstance(module, LoRALinear):
            return None
        base = module.base_layer
        if not isinstance(getattr(base, "weight", None), torch.Tensor) or not base.weight.is_floating_point():
            raise ValueError(f"{name}: cannot merge an adapter into {type(base).__name__} weights (quantised "
                             "or packed): load the base model in float (no quantize=/pack=), load_adapter, then merge")
        with torch.no_grad():
            base.weight += module.delta().to(base.weight.dtype)
        return base
    swap_modules(model, replace)
    model.lora_config = None
    return model


# ----------------------------------------------------------------------------------------------
# PEFT's file format: adapter_config.json + adapter_model.safetensors
# ----------------------------------------------------------------------------------------------

def peft_key(prefix, name, matrix):
    """Our layer name -> PEFT's tensor name, e.g. ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``."""
    return f"{PEFT_PREFIX}{prefix}{name}.{matrix}.weight"


def save_adapter(model, directory):
    """Write the adapters in PEFT's LoRA format, named for the transformers class the model came
    from, so ``peft.PeftModel.from_pretrained(transformers_model, directory)`` loads them."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters to save (add_lora or load_adapter first)")
    origin = origin_of(model)
    tensors = {}
    for name, layer in layers.items():
        tensors[peft_key(origin.text_prefix, name, "lora_A")] = layer.lora_A.weight.detach().contiguous()
        tensors[peft_key(origin.text_prefix, name, "lora_B")] = layer.lora_B.weight.detach().contiguous()
    cfg = model.lora_config
    suffixes = sorted({name.split(".")[-1] for name in layers})
    if origin.text_prefix == "model.":
        target = suffixes  # a text-only class: the short names match exactly our layers
    else:  # a multimodal class: its towers have q_proj ... too, so name the text decoder's alone
        target = rf"{re.escape(origin.text_prefix)}layers\.\d+\..*\.({'|'.join(suffixes)})"
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": origin.path,
        "r": cfg["r"], "lora_alpha": cfg["lora_alpha"], "lora_dropout": cfg["lora_dropout"],
        "target_modules": target, "use_rslora": cfg["use_rslora"], "bias": "none", "fan_in_fan_out": False,
        "inference_mode": True, "init_lora_weights": True, "modules_to_save": None, "use_dora": False,
        "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    return directory


UNSUPPORTED = {"use_dora": (False, None), "bias": ("none",), "modules_to_save": (None, []),
               "rank_pattern": ({}, None), "alpha_pattern": ({}, None), "fan_in_fan_out": (False, None)}


def read_adapter(directory):
    """A PEFT LoRA directory -> (config dict, {our layer name: (A, B)}); raises on what we do not support."""
    directory = Path(directory)
    cfg_file, weights = directory / "adapter_config.json", directory / "adapter_model.safetensors"
    for f in (cfg_file, weights):
        if not f.exists():
            raise FileNotFoundError(f"{directory}: no {f.name} (a PEFT LoRA adapter has adapter_config.json and "
                                    "adapter_model.safetensors)")
    config = json.loads(cfg_file.read_text())
    if config.get("peft_type") != "LORA":
        raise CheckpointError(f"{cfg_file}: peft_type {config.get('peft_type')!r}; minigemma reads LoRA adapters only")
    for key, fine in UNSUPPORTED.items():
        if config.get(key, fine[0]) not in fine:
            raise CheckpointError(f"{cfg_file}: {key}={config[key]!r} is not supported by minigemma's LoRA")
    pairs = {}
    for key, tensor in load_file(weights).items():
        m = re.fullmatch(r"base_model\.model\.(.+)\.(lora_A|lora_B)(?:\.default)?\.weight", key)
        if m is None:
            raise CheckpointError(f"{weights}: unexpected tensor {key} (expected ...lora_A.weight / ...lora_B.weight)")
        hf_name, matrix = m.groups()
        name = next((hf_name[len(p):] for p in HF_TEXT_PREFIXES if hf_name.startswith(p)), hf_name)
        if name.split(".")[0] in TOWERS:
            raise CheckpointError(f"{weights}: {key} adapts a vision/audio tower; minigemma's LoRA covers the "
                                  "text decoder only")
        pairs.setdefault(name, {})[matrix] = tensor
    for name, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise CheckpointError(f"{weights}: {name} has {sorted(pair)} but not both lora_A and lora_B")
    return config, {name: (p["lora_A"], p["lora_B"]) for name, p in pairs.items()}


def load_adapter(model, directory):
    """Read a PEFT LoRA adapter (ours or one trained with peft) into the model, in place: the
    named layers are wrapped in ``LoRALinear`` (or their adapters replaced). Returns the model."""
    config, pairs = read_adapter(directory)
    modules = dict(model.named_modules())
    problems = []
    for name, (A, B) in sorted(pairs.items()):
        module = modules.get(name)
        if module is None or not hasattr(module, "in_features"):
            problems.append(f"{name}: no such linear layer in the model")
        elif A.shape[1] != module.in_features or B.shape[0] != module.out_features or A.shape[0] != B.shape[1]:
            problems.append(f"{name}: adapter A {tuple(A.shape)} / B {tuple(B.shape)} do not fit a layer of "
                            f"{module.in_features} -> {module.out_features}")
    if problems:
        raise CheckpointError(f"{directory}: the adapter does not fit the model: " + "; ".join(problems[:10]))
    alpha, rslora = config["lora_alpha"], config.get("use_rslora", False)

    def replace(name, module):
        if name not in pairs or isinstance(module, LoRALinear):
            return None
        return LoRALinear(module, pairs[name][0].shape[0], alpha, config.get("lora_dropout", 0.0), None, rslora)

    if not lora_layers(model):
        model.requires_grad_(False)
    swap_modules(model, replace)
    layers = lora_layers(model)
    for name, (A, B) in pairs.items():
        layer = layers[name]
        if layer.r != A.shape[0]:
            raise CheckpointError(f"{directory}: {name} has rank {A.shape[0]}, the model's adapter rank {layer.r}")
        with torch.no_grad():
            layer.lora_A.weight.copy_(A)
            layer.lora_B.weight.copy_(B)
    target = config.get("target_modules")
    model.lora_config = {"r": config["r"], "lora_alpha": alpha, "lora_dropout": config.get("lora_dropout", 0.0),
                         "target_modules": target if isinstance(target, list) else sorted({n.split(".")[-1] for n in pairs}),
                         "use_rslora": rslora}
    return model
