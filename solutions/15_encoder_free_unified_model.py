"""Solutions to the exercises of notebooks/15_encoder_free_unified_model.ipynb."""

import torch


def merge_patches(patches, positions):
    patches, positions = torch.as_tensor(patches), torch.as_tensor(positions).long()
    cols, rows = int(positions[:, 0].max()) + 1, int(positions[:, 1].max()) + 1
    grid = torch.empty(rows, cols, 16, 16, 3, dtype=patches.dtype)  # every 16-pixel patch in its place
    grid[positions[:, 1], positions[:, 0]] = patches.reshape(-1, 16, 16, 3)
    image = grid.permute(0, 2, 1, 3, 4).reshape(16 * rows, 16 * cols, 3)  # (H, W, 3) back together
    R, C = rows // 3, cols // 3
    merged = image.reshape(R, 48, C, 48, 3).permute(0, 2, 1, 3, 4).reshape(R * C, 48 * 48 * 3)
    ys, xs = torch.meshgrid(torch.arange(R), torch.arange(C), indexing="ij")
    return merged, torch.stack([xs.flatten(), ys.flatten()], 1)  # (n, 6912), (n, 2) as (x, y), row by row


def invisible(patches):
    # patch_ln1 removes each patch's mean and standard deviation, so p -> a·p + b (a > 0) is invisible.
    # Halving the contrast around 0.5 keeps every pixel in [0, 1] and moves pixels far from 0.5.
    return 0.5 * torch.as_tensor(patches) + 0.25


def embedder_parameters(vision_config, text_width):
    P, E, T = 3 * 48 * 48, vision_config.mm_embed_dim, vision_config.mm_posemb_size
    layer_norms = 2 * P + 2 * E + 2 * E  # patch_ln1, patch_ln2, pos_norm: a weight and a bias each
    dense = P * E + E  # patch_dense, with its bias
    table = T * 2 * E  # pos_embedding: a column vector and a row vector per index
    projection = E * text_width  # embed_vision: a weightless RMSNorm, then Linear(E, text) without bias
    return layer_norms + dense + table + projection
