"""Solutions to the exercises of notebooks/06_gemma4_text_model.ipynb."""


def kv_projection_savings(config):
    saved = 0
    for i in range(config.num_hidden_layers):
        one = config.hidden_size * config.kv_heads_of(i) * config.head_dim_of(i)  # one (K*hd, D) projection
        if config.kv_donor(i) is not None:
            saved += 2 * one  # KV-shared: neither k_proj nor v_proj
        elif config.k_eq_v(i):
            saved += one  # keys as values: no v_proj
    return saved


# Answer to the question ({n: kv_projection_savings(c) / 1e6 for n, c in minigemma.PRESETS.items()}):
# E2B 18.9M and E4B 55.1M (KV sharing only: 20 and 18 layers without k_proj/v_proj), 26B-A4B 14.4M
# and 31B 110.1M (keys as values only: no v_proj on their 5 of 30 and 10 of 60 global layers, each
# 2 or 4 KV heads x 512). The 31B saves the most parameters, by keys as values. Next to 25-31B
# parameters that is small: the bigger saving of both mechanisms is in the KV cache (notebook 04),
# where shared layers store nothing at all.


def donors(config):
    first = config.num_hidden_layers - config.num_kv_shared_layers
    out = {}
    for i in range(first, config.num_hidden_layers):
        same_type = [j for j in range(first) if config.layer_types[j] == config.layer_types[i]]
        out[i] = same_type[-1]
    return out


# Answer to the question: a sliding and a global layer do not produce compatible keys and values:
# on Gemma 4 they differ in head size (256 vs 512), in KV-head count (on the larger models), in
# RoPE (base 10,000 on every pair vs p-RoPE) and in how much of the past they keep (a 512- or
# 1024-token window vs everything). A shared layer must read K/V of its own shape and kind.
