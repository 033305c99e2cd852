"""The KV cache: keys and values of past tokens, kept so each new token costs one step, not a re-run.

Every layer owns a ``LayerCache`` of ``size`` slots; the token at position ``p`` goes to slot
``p % size``. A global layer gets one slot per position it may ever see (``size = max_len``). A
sliding layer never looks further back than its window, so it gets only ``window`` slots: a *ring
buffer* in which each new token overwrites the one that just fell out of the window. Each slot
remembers its position (``-1`` while empty), so attention builds its mask from positions and
never cares in which order the ring holds them.
"""

import torch

from .config import SLIDING


class LayerCache:
    def __init__(self, batch, kv_heads, size, head_dim, dtype, device=None):
        self.size = size
        self.k = torch.zeros(batch, kv_heads, size, head_dim, dtype=dtype, device=device)  # (B, K, S, hd)
        self.v = torch.zeros_like(self.k)  # (B, K, S, hd)
        self.pos = torch.full((size,), -1, dtype=torch.long, device=device)  # (S,) position in each slot
        self.filled = 0  # slots [0, filled) have been written at least once

    def update(self, k, v, positions):
        """Add new keys/values; return what attention may look at, with the position of each.

        k, v: (B, K, T, hd); positions: (T,) -> k_all, v_all: (B, K, S, hd), pos_all: (S,)
        """
        T = k.shape[2]
        if T == 1 or positions[-1] < self.size:
            # Nothing this chunk still needs gets overwritten (one token only evicts the key that
            # just left its window; without wrap-around nothing is evicted): write, then read the
            # buffer in place. This is the decoding path, and it copies nothing.
            self._write(k, v, positions)
            return self.k[:, :, :self.filled], self.v[:, :, :self.filled], self.pos[:self.filled]
        # A chunk that wraps around the ring: its early queries still need keys that its late
        # tokens will overwrite, so attend over (old slots + the whole chunk), then write.
        k_all = torch.cat([self.k[:, :, :self.filled], k], dim=2)
        v_all = torch.cat([self.v[:, :, :self.filled], v], dim=2)
        pos_all = torch.cat([self.pos[:self.filled], positions])
        self._write(k, v, positions)
        return k_all, v_all, pos_all

    def _write(self, k, v, positions):
        n = min(k.shape[2], self.size)  # only the last `size` new entries can stay
        slots = positions[-n:] % self.size
        self.k[:, :, slots] = k[:, :, -n:]
        self.v[:, :, slots] = v[:, :, -n:]
        self.pos[slots] = positions[-n:]
        self.filled = min(self.size, self.filled + k.shape[2])

    @property
    def nbytes(self):
        return self.k.numel() * self.k.element_size() * 2


class KVCache:
    """One ``LayerCache`` per layer, sized by the layer's type and shape; ``seen`` counts tokens.

    KV-shared layers (Gemma 4 E2B/E4B) get ``None``: they read their donor's keys and values.
    """

    def __init__(self, config, batch: int, max_len: int, dtype=torch.float32, device=None):
        if max_len > config.max_position_embeddings:
            raise ValueError(f"a cache of {max_len} positions exceeds the model's context of "
                             f"{config.max_position_embeddings}")
        self.max_len, self.seen = max_len, 0
        # Which image each cached position belongs to (-1: text), for bidirectional image attention.
        self.blocks = torch.full((max_len,), -1, dtype=torch.long, device=device)
        self.layers = []
        for i in range(config.num_hidden_layers):
            if config.kv_donor(i) is not None:
                self.layers.append(None)
                continue
            size = layer_slots(config, i, max_len)
            self.layers.append(LayerCache(batch, config.kv_heads_of(i), size, config.head_dim_of(i), dtype, device))

    @property
    def nbytes(self):
        """Bytes the cache really holds (keys + values)."""
        return sum(layer.nbytes for layer in self.layers if layer is not None)


def layer_slots(config, i, context):
    """How many positions layer ``i`` keeps: its window if sliding, the whole context if global."""
    return min(config.sliding_window, context) if config.layer_types[i] == SLIDING else context


def kv_cache_bytes(config, context: int, dtype=torch.bfloat16, batch: int = 1, naive: bool = False) -> int:
    """Bytes of KV cache a model needs for ``context`` tokens -- without allocating anything.

    ``naive=True`` counts what a plain cache would hold: every layer, every position.
    Otherwise it is exactly what ``KVCache`` allocates: sliding layers hold only their window,
    KV-shared layers hold nothing.
    """
    itemsize = torch.empty(0, dtype=dtype).element_size()
    total = 0
    for i in range(config.num_hidden_layers):
        if not naive and config.kv_donor(i) is not None:
            continue
        slots = context if naive else layer_slots(config, i, context)
        total += 2 * batch * config.kv_heads_of(i) * slots * config.head_dim_of(i) * itemsize  # K and V
    return total
