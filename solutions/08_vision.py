"""Solutions to the exercises of notebooks/08_vision.ipynb."""

import math


def resized(height, width, budget):
    side = 48  # 3 × 16: sides are whole 3×3 blocks of patches
    scale = math.sqrt(budget * 9 * 256 / (height * width))
    h, w = math.floor(scale * height / side) * side, math.floor(scale * width / side) * side
    if h == 0:
        h, w = side, min(width // height * side, budget * side)
    elif w == 0:
        h, w = min(height // width * side, budget * side), side
    return h, w


def token_of_patch(positions):
    width = int(positions[:, 0].max()) + 1  # patches per row
    return positions[:, 0] // 3 + (width // 3) * (positions[:, 1] // 3)
