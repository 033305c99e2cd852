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

    def save(self, positions):
        """What writing ``positions`` (T,) will overwrite: the slots, their K/V and positions, ``filled``."""
        slots = positions % self.size
        return slots, self.k[:, :, slots].clone(), self.v[:, :, slots].clone(), self.pos[slots].clone(), self.filled

    def restore(self, saved, keep):
        """Undo the writes of all but the first ``keep`` of the saved positions."""
        slots, k, v, pos, filled = saved
        self.k[:, :, slots[keep:]] = k[:, :, keep:]
        self.v[:, :, slots[keep:]] = v[:, :, keep:]
        self.pos[slots[keep:]] = pos[keep:]
        self.filled = min(self.size, filled + keep)

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

    def checkpoint(self, n: int):
        """Remember what the next ``n`` tokens will overwrite, so that ``rollback`` can forget them.

        Speculative decoding writes ``n`` guessed tokens, then keeps only a prefix of them. In a
        ring buffer the guesses overwrite older keys that later tokens still need, so those slots
        are saved here (``n`` slots per layer: a small copy). ``n`` must fit in every ring."""
        smallest = min(layer.size for layer in self.layers if layer is not None)
        if n > smallest:
            raise ValueError(f"cannot take back {n} tokens: the smallest ring buffer holds {smallest} positions")
        positions = torch.arange(self.seen, self.seen + n, device=self.blocks.device)  # (n,)
        return self.seen, self.blocks[self.seen:self.seen + n].clone(), [
            layer.save(positions) if layer is not None else None for layer in self.layers]

    def rollback(self, checkpoint, keep: int):
        """Forget every token written since ``checkpoint`` except the first ``keep``: afterwards the
        cache equals one that only ever saw those ``keep`` tokens."""
        seen, blocks, saved = checkpoint
        for layer, s in zip(self.layers, saved):
            if layer is not None:
                layer.restore(s, keep)
        self.blocks[seen + keep:seen + len(blocks)] = blocks[keep:]
        self.seen = seen + keep

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
