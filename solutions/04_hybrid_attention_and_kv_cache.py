"""Solutions to the exercises of notebooks/04_hybrid_attention_and_kv_cache.ipynb."""

import torch


def decode_attention(attn, x_t, t, past_k, past_v, rope):
    B, H, K, hd = x_t.shape[0], attn.H, attn.K, attn.hd
    q = attn.q_norm(attn.q_proj(x_t).view(B, 1, H, hd)).transpose(1, 2)  # (B, H, 1, hd)
    q = rope(q, t)
    k_raw = attn.k_proj(x_t).view(B, 1, K, hd)  # (B, 1, K, hd)
    v = k_raw if attn.k_eq_v else attn.v_proj(x_t).view(B, 1, K, hd)  # keys as values on 26B/31B global layers
    k = rope(attn.k_norm(k_raw).transpose(1, 2), t)  # (B, K, 1, hd)
    v = (attn.v_norm(v) if attn.v_norm is not None else v).transpose(1, 2)  # (B, K, 1, hd)
    keys, values = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)  # (B, K, t + 1, hd)
    if attn.window is not None:  # a sliding layer sees itself and window - 1 tokens back
        keys, values = keys[:, :, -attn.window:], values[:, :, -attn.window:]
    keys, values = keys.repeat_interleave(H // K, dim=1), values.repeat_interleave(H // K, dim=1)  # (B, H, S, hd)
    weights = (q @ keys.transpose(-1, -2) * attn.scaling).softmax(-1)  # (B, H, 1, S): no mask needed, all past
    out = (weights @ values).transpose(1, 2).reshape(B, 1, H * hd)  # (B, 1, H·hd)
    return attn.o_proj(out)  # (B, 1, D)


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
