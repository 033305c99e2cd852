"""Solutions to the exercises of notebooks/02_gemma_decoder.ipynb."""

import torch


def earliest_reachable(T, window, n_layers):
    # One sliding layer lets position t read t - (window - 1) ... t. Stacking n of them chains n
    # such hops, so information can come from n * (window - 1) positions back (never before 0).
    return [max(0, t - n_layers * (window - 1)) for t in range(T)]


# Answer to the question: Gemma 3 270M has 5 sliding layers between two global layers, window 512,
# so through them alone a token can be influenced by tokens up to 5 * 511 = 2,555 positions back.
# The global layers (every sixth) see the whole past anyway; the reach matters for how much a
# purely local stack could carry.


def relative_score(q, k, distance, theta):
    # rope(q, m) . rope(k, m - d) = q . R(-m) R(m - d) k = q . R(-d) k: only the key is turned,
    # by minus the distance. Pairs are (i, i + d/2), the rotate-half layout.
    d = q.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    angle = -distance * inv_freq
    cos, sin = torch.cos(angle), torch.sin(angle)
    k1, k2 = k[: d // 2].double(), k[d // 2 :].double()
    turned = torch.cat([k1 * cos - k2 * sin, k2 * cos + k1 * sin])  # (d,)
    return (q.double() @ turned).item()


def parameter_counts(model):
    counts = {"embedding": 0, "attention": 0, "mlp": 0, "norms": 0}
    for name, p in model.named_parameters():
        if "embed" in name:
            counts["embedding"] += p.numel()
        elif "norm" in name:
            counts["norms"] += p.numel()
        elif "self_attn" in name:
            counts["attention"] += p.numel()
        else:
            counts["mlp"] += p.numel()
    return counts


# Answer to the question: the embedding is 262,144 x 640 = 167.8M of 268.1M parameters, 63 %.
# The vocabulary is shared with the largest Gemma 3 models (it covers many languages, code and
# emoji), while the width of this model is only 640: a table whose size grows with vocabulary x
# width dominates when the layers are this narrow. Because the table is tied (also the output
# head), it is counted once.
