"""Solutions to the exercises of notebooks/04_hybrid_attention_and_kv_cache.ipynb."""


def ring_contents(n_tokens, window):
    slots = [-1] * window
    for p in range(n_tokens):
        slots[p % window] = p
    return slots


def kv_bytes_per_token(config):
    total = 0
    for i in range(config.num_hidden_layers):
        if config.is_global(i) and config.kv_donor(i) is None:
            total += 2 * config.kv_heads_of(i) * config.head_dim_of(i) * 2
    return total
