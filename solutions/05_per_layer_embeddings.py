"""Solutions to the exercises of notebooks/05_per_layer_embeddings.ipynb."""

import math

import torch
import torch.nn.functional as F


def _rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w  # Gemma 4: scale by w


def ple_end_to_end(model, ids, y, i):
    c, W = model.config, model.state_dict()
    B, T = ids.shape
    L, P, D, eps = c.num_hidden_layers, c.hidden_size_per_layer_input, c.hidden_size, c.rms_norm_eps
    x = W["embed_tokens.weight"][ids] * torch.tensor(math.sqrt(D), dtype=W["embed_tokens.weight"].dtype)  # (B, T, D)
    token = (W["embed_tokens_per_layer.weight"][ids] * math.sqrt(P)).view(B, T, L, P)
    context = ((x @ W["per_layer_model_projection.weight"].T) / math.sqrt(D)).view(B, T, L, P)
    p = (token + _rms(context, W["per_layer_projection_norm.weight"], eps)) / math.sqrt(2)  # (B, T, L, P)
    gate = F.gelu(y @ W[f"layers.{i}.per_layer_input_gate.weight"].T, approximate="tanh")  # (B, T, P)
    out = (gate * p[:, :, i]) @ W[f"layers.{i}.per_layer_projection.weight"].T  # (B, T, D)
    return y + _rms(out, W[f"layers.{i}.post_per_layer_input_norm.weight"], eps)


def ple_bytes_per_token(config, bytes_per_number):
    # one row of the table: every layer's slice of P numbers
    return config.num_hidden_layers * (config.hidden_size_per_layer_input or 0) * bytes_per_number


# Answer to the question: E2B needs 35 x 256 x 2 = 17,920 bytes per token, so a 1,000-token prompt
# reads 17.9 MB of a 4.70 GB table (262,144 rows x 8,960 x 2 bytes), 0.4 %. The main embedding is
# also the output head (tied weights): every generated token multiplies the final hidden state with
# the *whole* table to score all 262,144 pieces, so it is used in full at every step and must sit
# in fast memory. The PLE table is never multiplied; it is only indexed.
