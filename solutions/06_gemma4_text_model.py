"""Solutions to the exercises of notebooks/06_gemma4_text_model.ipynb."""

import torch


def softcap(logits, cap):
    return cap * torch.tanh(logits / cap)


def donors(config):
    first = config.num_hidden_layers - config.num_kv_shared_layers
    out = {}
    for i in range(first, config.num_hidden_layers):
        same_type = [j for j in range(first) if config.layer_types[j] == config.layer_types[i]]
        out[i] = same_type[-1]
    return out
