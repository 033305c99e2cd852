"""Solutions to the exercises of notebooks/14_fine_tuning.ipynb."""


def merged_weight(W, A, B, alpha, r):
    return W + (alpha / r) * B @ A  # x Wᵀ + (α/r) x Aᵀ Bᵀ = x (W + (α/r) B A)ᵀ


def lora_parameters(config, r, targets):
    total = 0
    for i in range(config.num_hidden_layers):
        D, hd, H, K = config.hidden_size, config.head_dim_of(i), config.num_attention_heads, config.kv_heads_of(i)
        shared = config.kv_donor(i) is not None  # no k_proj / v_proj of its own
        shapes = {"q_proj": (D, H * hd), "o_proj": (H * hd, D), "gate_proj": (D, config.mlp_width(i)),
                  "up_proj": (D, config.mlp_width(i)), "down_proj": (config.mlp_width(i), D)}
        if not shared:
            shapes["k_proj"] = (D, K * hd)
            if not config.k_eq_v(i):
                shapes["v_proj"] = (D, K * hd)
        total += sum(r * (d_in + d_out) for name, (d_in, d_out) in shapes.items() if name in targets)
    return total
