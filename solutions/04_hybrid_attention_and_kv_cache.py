"""Solutions to the exercises of notebooks/04_hybrid_attention_and_kv_cache.ipynb."""


def ring_contents(n_tokens, window):
    slots = [-1] * window
    for p in range(n_tokens):
        slots[p % window] = p
    return slots


def kv_bytes_per_token(config):
    total, table = 0, 0
    for i in range(config.num_hidden_layers):
        if config.is_global(i) and config.kv_donor(i) is None:
            tensors = 1 if config.k_eq_v(i) else 2  # keys as values: the cache holds V alone
            total += tensors * config.kv_heads_of(i) * config.head_dim_of(i) * 2
            if config.k_eq_v(i):  # one row of the shared table: cos and sin of each turning pair
                rope = config.rope_parameters[config.layer_types[i]]
                turning = int(rope.get("partial_rotary_factor", 1.0) * config.head_dim_of(i) // 2)
                table = 2 * 2 * turning * 2
    return total + table
