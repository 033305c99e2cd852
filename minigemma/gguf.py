"""GGUF, the single-file checkpoint format of llama.cpp, read from scratch.

A GGUF file is four things one after another:

1. a header: the magic bytes ``GGUF``, a version (we read 2 and 3), the number of tensors and the
   number of metadata entries;
2. metadata: ``key -> value`` pairs (model sizes, the whole tokenizer vocabulary, ...);
3. a tensor table: for every tensor its name, shape, storage type and byte offset;
4. the tensor data, starting at the next multiple of ``general.alignment`` (32 by default).

Quantised types store blocks of numbers that share a scale. ``dequantize`` turns each type we
support back into float32 with numpy, one vectorised expression per type (no Python loop over
blocks). Supported: F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_K, Q6_K -- the types in the Gemma 3 270M
file, plus the two trivial cousins. Every other type (Q4_1, Q5_1, Q2_K, Q3_K, Q5_K, IQ*, ...) raises
``GGUFError`` naming the type. Writing GGUF files is left out.
"""

import mmap
import struct
from dataclasses import dataclass

import numpy as np


class GGUFError(ValueError):
    """A GGUF file is corrupt, truncated or uses something we do not support."""


# Metadata value types (GGUF spec): id -> struct format of one scalar.
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32,
          6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}

# Tensor storage types: id -> (name, numbers per block, bytes per block).
TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 30: ("BF16", 1, 2),
}


@dataclass
class TensorInfo:
    name: str
    shape: tuple  # numpy order: (rows, cols); GGUF stores the reverse (innermost first)
    type_name: str
    offset: int  # absolute byte offset in the file
    nbytes: int


class GGUFFile:
    """Parse a GGUF file: ``.metadata`` (dict), ``.tensors`` (name -> TensorInfo), ``.tensor(name)``."""

    def __init__(self, path):
        self.path = str(path)
        # A read-only memory map: tensors are read lazily, only the header is parsed now.
        try:
            with open(self.path, "rb") as fh:
                self._buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise GGUFError(f"{self.path}: cannot be read as a GGUF file ({e})") from e
        self._pos = 0
        if self._read(4) != b"GGUF":
            raise GGUFError(f"{self.path}: not a GGUF file (the first 4 bytes are not 'GGUF')")
        self.version = self._scalar(4)
        if self.version not in (2, 3):
            raise GGUFError(f"{self.path}: GGUF version {self.version} is not supported (only 2 and 3)")
        n_tensors, n_kv = self._scalar(10), self._scalar(10)
        self.metadata = {}
        for _ in range(n_kv):
            key = self._string()
            self.metadata[key] = self._value(self._scalar(4))
        infos = [self._tensor_info() for _ in range(n_tensors)]
        align = int(self.metadata.get("general.alignment", 32))
        data_start = (self._pos + align - 1) // align * align
        self.tensors = {}
        for name, shape, type_id, rel in infos:
            type_name, block, block_bytes = TYPES.get(type_id, (f"type id {type_id}", 1, 0))
            nbytes = int(np.prod(shape)) // block * block_bytes
            info = TensorInfo(name, shape, type_name, data_start + rel, nbytes)
            if info.offset + nbytes > len(self._buf):
                raise GGUFError(f"{self.path}: truncated: tensor '{name}' ends at byte "
                                f"{info.offset + nbytes}, but the file has {len(self._buf)} bytes")
            self.tensors[name] = info

    # --- low-level readers; each one checks that the bytes are really there ---
    def _need(self, n):
        if self._pos + n > len(self._buf):
            raise GGUFError(f"{self.path}: truncated: needed {n} bytes at offset {self._pos}, "
                            f"the file has {len(self._buf)}")

    def _read(self, n):
        self._need(n)
        self._pos += n
        return self._buf[self._pos - n:self._pos]

    def _scalar(self, type_id):
        fmt = _SCALAR.get(type_id)
        if fmt is None:
            raise GGUFError(f"{self.path}: corrupt metadata: unknown value type {type_id} at offset {self._pos}")
        size = struct.calcsize(fmt)
        self._need(size)
        self._pos += size
        return struct.unpack_from(fmt, self._buf, self._pos - size)[0]

    def _string(self):
        return self._read(self._scalar(10)).decode("utf-8", errors="replace")

    def _value(self, type_id):
        if type_id == _STRING:
            return self._string()
        if type_id != _ARRAY:
            return self._scalar(type_id)
        item_type, count = self._scalar(4), self._scalar(10)
        if item_type in _NUMPY:  # numbers: one vectorised read
            dtype = np.dtype(_NUMPY[item_type]).newbyteorder("<")
            return np.frombuffer(self._read(count * dtype.itemsize), dtype=dtype).tolist()
        return [self._value(item_type) for _ in range(count)]

    def _tensor_info(self):
        name = self._string()
        n_dims = self._scalar(4)
        if n_dims > 8:
            raise GGUFError(f"{self.path}: corrupt tensor table: '{name}' has {n_dims} dimensions")
        dims = [self._scalar(10) for _ in range(n_dims)]
        type_id, offset = self._scalar(4), self._scalar(10)
        return name, tuple(reversed(dims)), type_id, offset  # GGUF lists the innermost dim first

    def tensor(self, name) -> np.ndarray:
        """Dequantise one tensor to a float32 numpy array of its numpy-order shape."""
        info = self.tensors[name]
        raw = np.frombuffer(self._buf, dtype=np.uint8, count=info.nbytes, offset=info.offset)
        return dequantize(raw, info.type_name, info.shape, name)

    def int4_blocks(self, name):
        """A 4-bit tensor's blocks as they are stored -> numpy ``(codes, scale, low)`` (affine 4-bit
        codes per 32 values: what ``quantize.py``'s int4 format holds), or None unless it is Q4_K or Q4_0."""
        info = self.tensors[name]
        parts = {"Q4_K": q4_k_parts, "Q4_0": q4_0_parts}.get(info.type_name)
        if parts is None:
            return None
        block_bytes = next(t[2] for t in TYPES.values() if t[0] == info.type_name)
        raw = np.frombuffer(self._buf, dtype=np.uint8, count=info.nbytes, offset=info.offset).reshape(-1, block_bytes)
        return tuple(np.ascontiguousarray(a) for a in parts(raw))


# ---------------------------------------------------------------------------------------------
# Dequantisation. ``raw`` is a uint8 array of whole blocks; each function returns float32 values
# in file order. Block layouts follow ggml's ``block_*`` structs (ggml-common.h).

def _f16(raw, start, stop):
    """Read a little-endian f16 field at bytes [start, stop) of every block -> (n_blocks, 1)."""
    return raw[:, start:stop].copy().view(np.float16).astype(np.float32)


def _q8_0(raw, n):  # block of 32: d (f16), 32 × int8
    return _f16(raw, 0, 2) * raw[:, 2:].view(np.int8).astype(np.float32)


def q4_0_parts(raw):
    """Q4_0 blocks (n, 18) -> codes (n, 32) in 0..15, scale (n, 1), low (n, 1): value = scale·code + low."""
    d, qs = _f16(raw, 0, 2), raw[:, 2:]
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1), d, -8 * d  # low nibbles are values 0..15


def _q4_0(raw, n):  # block of 32: d (f16), 16 bytes of nibbles
    q, scale, low = q4_0_parts(raw)
    return scale * q + low


def _q5_0(raw, n):  # block of 32: d (f16), qh (32 high bits), qs (16 bytes of nibbles)
    d = _f16(raw, 0, 2)
    qh = raw[:, 2:6].copy().view("<u4")  # (n, 1): bit j is the 5th bit of value j
    qs = raw[:, 6:22]
    bits = (qh >> np.arange(32, dtype=np.uint32)) & 1  # (n, 32)
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)  # values 0..15, then 16..31
    return d * ((low | (bits.astype(np.int32) << 4)) - 16).astype(np.float32)


def _k_scales(scales):
    """The 6-bit (scale, min) pairs of Q4_K/Q5_K: 12 bytes -> two (n, 8) arrays."""
    s = scales.astype(np.int32)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


def q4_k_parts(raw):
    """Q4_K super-blocks (n, 144) -> codes (n, 256) in 0..15, scale (n, 8), low (n, 8), one per
    sub-block of 32: value = scale·code + low. An affine map of 4-bit integers per 32 values --
    exactly the group-32 int4 format of ``quantize.py``."""
    n = raw.shape[0]
    d, dmin = _f16(raw, 0, 2), _f16(raw, 2, 4)
    sc, mn = _k_scales(raw[:, 4:16])
    qs = raw[:, 16:144].reshape(n, 4, 32)  # 4 chunks of 64 values, each packed in 32 bytes
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(n, 256)  # sub-block 2i: low, 2i+1: high
    return q, d * sc, -(dmin * mn)


def _q4_k(raw, n):  # super-block of 256 = 8 sub-blocks of 32: d, dmin (f16), 12 scale bytes, 128 bytes
    q, scale, low = q4_k_parts(raw)
    out = scale[:, :, None] * q.reshape(n, 8, 32) + low[:, :, None]  # (n, 8, 32)
    return out.reshape(n, 256)


def _q6_k(raw, n):  # super-block of 256: ql (128), qh (64), 16 int8 scales, d (f16)
    ql, qh = raw[:, 0:128].reshape(n, 2, 64), raw[:, 128:192].reshape(n, 2, 32)
    scales = raw[:, 192:208].view(np.int8).astype(np.float32).reshape(n, 2, 8)
    d = _f16(raw, 208, 210)[:, :, None]  # (n, 1, 1)
    # Each half of 128 values: four groups of 32 take low/high nibbles of ql and 2-bit pairs of qh.
    q = np.stack([
        (ql[:, :, :32] & 0x0F) | ((qh >> 0) & 3) << 4,
        (ql[:, :, 32:] & 0x0F) | ((qh >> 2) & 3) << 4,
        (ql[:, :, :32] >> 4) | ((qh >> 4) & 3) << 4,
        (ql[:, :, 32:] >> 4) | ((qh >> 6) & 3) << 4,
    ], axis=2).astype(np.float32) - 32  # (n, 2 halves, 4 groups, 32)
    q = q.reshape(n, 2, 8, 16)  # each scale covers 16 consecutive values
    return (d[:, :, :, None] * scales[:, :, :, None] * q).reshape(n, 256)


_DEQUANT = {"Q8_0": _q8_0, "Q4_0": _q4_0, "Q5_0": _q5_0, "Q4_K": _q4_k, "Q6_K": _q6_k}
SUPPORTED_TYPES = ("F32", "F16", "BF16", *_DEQUANT)


def dequantize(raw: np.ndarray, type_name: str, shape: tuple, name: str = "tensor") -> np.ndarray:
    """uint8 bytes of ``type_name`` -> float32 array of ``shape``."""
    raw = np.asarray(raw, dtype=np.uint8)
    if type_name == "F32":
        out = raw.view("<f4").copy()  # a copy: the file is mapped read-only
    elif type_name == "F16":
        out = raw.view("<f2").astype(np.float32)
    elif type_name == "BF16":  # bf16 is the top half of a float32
        out = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    elif type_name in _DEQUANT:
        _, block, block_bytes = next(t for t in TYPES.values() if t[0] == type_name)
        blocks = raw.reshape(-1, block_bytes)  # (n_blocks, bytes per block)
        out = _DEQUANT[type_name](blocks, blocks.shape[0]).reshape(-1)
    else:
        raise GGUFError(f"tensor '{name}' has type {type_name}, which minigemma cannot dequantise; "
                        f"supported: {', '.join(SUPPORTED_TYPES)}")
    return np.ascontiguousarray(out, dtype=np.float32).reshape(shape)
