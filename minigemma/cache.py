"""The KV cache: keys and values of past tokens, kept so each new token costs one step, not a re-run.

Every layer owns a ``LayerCache`` of ``size`` slots; the token at position ``p`` goes to slot
``p % size``. A global layer gets one slot per position it may ever see (``size = max_len``). A
sliding layer never looks further back than its window, so it gets only ``window`` slots: a *ring
buffer* in which each new token overwrites the one that just fell out of the window. Each slot
remembers its position (``-1`` while empty), so attention builds its mask from positions and
never cares in which order the ring holds them.

**Keys as values (Gemma 4 26B/31B global layers).** There K and V come from one raw projection, and
the key norm and the weightless value norm divide by the same RMS, so before RoPE the key *is* the
value times the key-norm weight: ``K = RoPE(V ⊙ w_k)``. Such a layer's cache can hold V alone and
attention rebuilds K on read: half the memory of those layers, which are the ones that grow with
the context. Rebuilding needs each cached position's RoPE angles; computing their cosines at every
step would cost more than the attention itself, so the cache keeps one small table of them (only
the pairs that p-RoPE turns), shared by those layers. ``KVCache(..., values_only=False)``
keeps K and V as usual.
"""

import torch

from .config import SLIDING
from .rope import cos_sin, inv_frequencies


class LayerCache:
    """``key_rope=(cos, sin)``, each (positions, 2r), makes a values-only cache for a keys-as-values
    layer: ``k`` is not kept, and ``key_rope[0][p]`` is the cosine of the turning pairs at position p."""

    def __init__(self, batch, kv_heads, size, head_dim, dtype, device=None, key_rope=None):
        self.size, self.key_rope = size, key_rope
        self.v = torch.zeros(batch, kv_heads, size, head_dim, dtype=dtype, device=device)  # (B, K, S, hd)
        self.k = None if key_rope is not None else torch.zeros_like(self.v)  # (B, K, S, hd); None: rebuilt
        self.pos = torch.full((size,), -1, dtype=torch.long, device=device)  # (S,) position in each slot
        self.filled = 0  # slots [0, filled) have been written at least once

    def update(self, k, v, positions):
        """Add new keys/values; return what attention may look at, with the position of each.

        k, v: (B, K, T, hd); positions: (T,) -> k_all, v_all: (B, K, S, hd), pos_all: (S,)
        A values-only cache ignores ``k`` and returns ``k_all = None``: the caller rebuilds it.
        """
        T = k.shape[2]
        if self.k is None and positions[-1] >= self.size:
            raise ValueError(f"position {positions[-1]} does not fit a values-only cache of {self.size} positions "
                             "(it rebuilds keys from slot = position, so it cannot wrap around)")
        if T == 1 or positions[-1] < self.size:
            # Nothing this chunk still needs gets overwritten (one token only evicts the key that
            # just left its window; without wrap-around nothing is evicted): write, then read the
            # buffer in place. This is the decoding path, and it copies nothing.
            self._write(k, v, positions)
            k_all = self.k[:, :, :self.filled] if self.k is not None else None
            return k_all, self.v[:, :, :self.filled], self.pos[:self.filled]
        # A chunk that wraps around the ring: its early queries still need keys that its late
        # tokens will overwrite, so attend over (old slots + the whole chunk), then write.
        k_all = torch.cat([self.k[:, :, :self.filled], k], dim=2) if self.k is not None else None
        v_all = torch.cat([self.v[:, :, :self.filled], v], dim=2)
        pos_all = torch.cat([self.pos[:self.filled], positions])
        self._write(k, v, positions)
        return k_all, v_all, pos_all

    def _write(self, k, v, positions):
        n = min(v.shape[2], self.size)  # only the last `size` new entries can stay
        start = int(positions[-n]) % self.size
        if start + n <= self.size:  # consecutive positions, no wrap: a slice (a plain copy, unlike indexing)
            slots = slice(start, start + n)
        else:
            slots = positions[-n:] % self.size
        if self.k is not None:
            self.k[:, :, slots] = k[:, :, -n:]
        self.v[:, :, slots] = v[:, :, -n:]
        self.pos[slots] = positions[-n:]
        self.filled = min(self.size, self.filled + v.shape[2])

    def save(self, positions):
        """What writing ``positions`` (T,) will overwrite: the slots, their K/V and positions, ``filled``."""
        slots = positions % self.size
        k = self.k[:, :, slots].clone() if self.k is not None else None  # None: a values-only cache
        return slots, k, self.v[:, :, slots].clone(), self.pos[slots].clone(), self.filled

    def restore(self, saved, keep):
        """Undo the writes of all but the first ``keep`` of the saved positions."""
        slots, k, v, pos, filled = saved
        if k is not None:
            self.k[:, :, slots[keep:]] = k[:, :, keep:]
        self.v[:, :, slots[keep:]] = v[:, :, keep:]
        self.pos[slots[keep:]] = pos[keep:]
        self.filled = min(self.size, filled + keep)

    @property
    def nbytes(self):
        return sum(t.numel() * t.element_size() for t in (self.k, self.v) if t is not None)


class KVCache:
    """One ``LayerCache`` per layer, sized by the layer's type and shape; ``seen`` counts tokens.

    KV-shared layers (Gemma 4 E2B/E4B) get ``None``: they read their donor's keys and values.
    Keys-as-values layers (26B/31B global) hold values only, unless ``values_only=False``.
    """

    def __init__(self, config, batch: int, max_len: int, dtype=torch.float32, device=None,
                 values_only: bool = True):
        if max_len > config.max_position_embeddings:
            raise ValueError(f"a cache of {max_len} positions exceeds the model's context of "
                             f"{config.max_position_embeddings}")
        self.max_len, self.seen = max_len, 0
        # Which image each cached position belongs to (-1: text), for bidirectional image attention.
        self.blocks = torch.full((max_len,), -1, dtype=torch.long, device=device)
        self.layers, self.key_ropes = [], {}  # layer type -> (cos, sin) of its turning pairs
        for i in range(config.num_hidden_layers):
            if config.kv_donor(i) is not None:
                self.layers.append(None)
                continue
            size = layer_slots(config, i, max_len)
            key_rope = None
            if values_only and config.k_eq_v(i):
                key_rope = self.key_ropes.get(config.layer_types[i]) or turning_rope(config, i, max_len, dtype, device)
                self.key_ropes[config.layer_types[i]] = key_rope  # one table for all such layers
            self.layers.append(LayerCache(batch, config.kv_heads_of(i), size, config.head_dim_of(i), dtype, device,
                                          key_rope))

    def add_image_blocks(self, blocks):
        """Remember which image each of the next T positions belongs to -> the blocks of every
        position so far, (seen + T,). blocks: (T,) ids from ``multimodal.vision_blocks`` (-1: text).

        Bidirectional attention inside an image needs all its tokens in one chunk; ids are made
        unique across chunks, so that two images never count as one."""
        start, T = self.seen, len(blocks)
        earlier = self.blocks[:start]
        if start and earlier[-1] >= 0 and blocks[0] >= 0:
            raise ValueError(f"position {start} continues an image from the previous chunk: the tokens "
                             "of an image attend to each other both ways, so pass each image in one chunk")
        offset = int(earlier.max()) + 1 if start else 0
        self.blocks[start:start + T] = torch.where(blocks >= 0, blocks + offset, -1)
        return self.blocks[:start + T]

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
        """Bytes the cache really holds: keys and values (values alone on keys-as-values layers, plus
        their shared table of RoPE angles)."""
        tables = sum(t.numel() * t.element_size() for pair in self.key_ropes.values() for t in pair)
        return sum(layer.nbytes for layer in self.layers if layer is not None) + tables


def layer_slots(config, i, context):
    """How many positions layer ``i`` keeps: its window if sliding, the whole context if global."""
    return min(config.sliding_window, context) if config.layer_types[i] == SLIDING else context


def turning_rope(config, i, max_len, dtype, device=None):
    """(cos, sin) of layer ``i``'s turning RoPE pairs at positions 0..max_len-1: each (max_len, 2r).

    p-RoPE turns only the first ``r`` of the ``hd/2`` pairs (the zero frequencies sit at the end);
    the others keep angle 0 and need no table.
    """
    inv_freq = inv_frequencies(config.head_dim_of(i), config.rope_parameters[config.layer_types[i]])  # (hd/2,)
    r = int((inv_freq != 0).sum())
    return cos_sin(inv_freq[:r], torch.arange(max_len, device=device), dtype)


def kv_cache_bytes(config, context: int, dtype=torch.bfloat16, batch: int = 1, naive: bool = False,
                   values_only: bool = True) -> int:
    """Bytes of KV cache a model needs for ``context`` tokens -- without allocating anything.

    ``naive=True`` counts what a plain cache would hold: every layer, every position, K and V.
    Otherwise it is exactly what ``KVCache(config, batch, context, dtype, values_only=...)``
    allocates: sliding layers hold only their window, KV-shared layers hold nothing, and
    keys-as-values layers hold V alone plus one shared table of RoPE angles (unless
    ``values_only=False``).
    """
    itemsize = torch.empty(0, dtype=dtype).element_size()
    total = 0
    tables = {}  # layer type -> bytes of its (cos, sin) table, counted once
    for i in range(config.num_hidden_layers):
        if not naive and config.kv_donor(i) is not None:
            continue
        slots = context if naive else layer_slots(config, i, context)
        v_only = not naive and values_only and config.k_eq_v(i)
        if v_only:
            cos, _ = turning_rope(config, i, 1, dtype)  # (1, 2r)
            tables[config.layer_types[i]] = 2 * context * cos.shape[-1] * itemsize  # cos and sin
        total += (1 if v_only else 2) * batch * config.kv_heads_of(i) * slots * config.head_dim_of(i) * itemsize
    return total + sum(tables.values())
