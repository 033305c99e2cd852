"""The from-scratch GGUF reader against the `gguf` package (llama.cpp's own Python reader)."""

import numpy as np
import pytest

from minigemma.gguf import GGUFError, GGUFFile, dequantize


@pytest.fixture(scope="module")
def both(gguf_path):
    import gguf

    return GGUFFile(gguf_path), gguf.GGUFReader(gguf_path)


def test_header_and_metadata_match(both):
    ours, ref = both
    assert ours.version == 3 and len(ours.tensors) == len(ref.tensors) == 236
    for key in ("general.architecture", "gemma3.block_count", "gemma3.embedding_length",
                "gemma3.attention.sliding_window", "gemma3.rope.freq_base", "tokenizer.ggml.bos_token_id"):
        assert ours.metadata[key] == pytest.approx(ref.fields[key].contents())
    assert ours.metadata["tokenizer.ggml.tokens"] == ref.fields["tokenizer.ggml.tokens"].contents()
    assert ours.metadata["tokenizer.ggml.scores"] == pytest.approx(ref.fields["tokenizer.ggml.scores"].contents())


def test_every_tensor_type_in_the_file_dequantises_like_gguf(both):
    """All 236 tensors: F32, Q8_0, Q5_0, Q4_K and Q6_K, bit for bit."""
    import gguf

    ours, ref = both
    seen = set()
    for t in ref.tensors:
        expected = gguf.quants.dequantize(t.data, t.tensor_type)
        got = ours.tensor(t.name)
        assert got.shape == expected.shape, t.name
        np.testing.assert_array_equal(got, expected.astype(np.float32), err_msg=t.name)
        seen.add(ours.tensors[t.name].type_name)
    assert seen == {"F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"}


@pytest.mark.parametrize("type_name", ["F16", "BF16", "Q4_0", "Q5_0", "Q8_0"])
def test_synthetic_blocks_dequantise_like_gguf(type_name):
    """Types the 270M file does not hold (or holds few of), on random data quantised by gguf."""
    import gguf

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 256)).astype(np.float32)
    qtype = gguf.GGMLQuantizationType[type_name]
    raw = gguf.quants.quantize(x, qtype)
    expected = gguf.quants.dequantize(raw, qtype).astype(np.float32)
    got = dequantize(np.ascontiguousarray(raw).view(np.uint8).reshape(-1), type_name, (8, 256))
    np.testing.assert_array_equal(got, expected)


def _write_gguf(path, tensors, extra=None):
    import gguf

    w = gguf.GGUFWriter(str(path), "gemma3")
    for k, v in (extra or {}).items():
        w.add_uint32(k, v)
    for name, (array, qtype) in tensors.items():
        if qtype is None:
            w.add_tensor(name, array)
        else:
            w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_reads_a_file_written_by_gguf(tmp_path):
    x = np.arange(64, dtype=np.float32).reshape(2, 32)
    _write_gguf(tmp_path / "ok.gguf", {"w": (x, None)}, {"test.value": 7})
    f = GGUFFile(tmp_path / "ok.gguf")
    assert f.metadata["test.value"] == 7
    np.testing.assert_array_equal(f.tensor("w"), x)


def test_unsupported_type_is_named(tmp_path):
    import gguf

    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    _write_gguf(tmp_path / "q41.gguf", {"w": (x, gguf.GGMLQuantizationType.Q4_1)})
    f = GGUFFile(tmp_path / "q41.gguf")
    with pytest.raises(GGUFError, match="tensor 'w' has type Q4_1, which minigemma cannot dequantise"):
        f.tensor("w")


def test_truncated_file(tmp_path, gguf_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_path.read_bytes()[:50_000_000])
    with pytest.raises(GGUFError, match="truncated: tensor '.*' ends at byte"):
        GGUFFile(cut)
    short = tmp_path / "short.gguf"
    short.write_bytes(gguf_path.read_bytes()[:1000])
    with pytest.raises(GGUFError, match="truncated: needed"):
        GGUFFile(short)


def test_not_gguf_and_corrupt_metadata(tmp_path, gguf_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 100)
    with pytest.raises(GGUFError, match="not a GGUF file"):
        GGUFFile(bad)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFError, match="cannot be read as a GGUF file"):
        GGUFFile(empty)
    head = bytearray(gguf_path.read_bytes()[:4096])
    # The first metadata entry starts at byte 24: key length (8), key, then its value type (4).
    key_len = int.from_bytes(head[24:32], "little")
    head[32 + key_len:36 + key_len] = (99).to_bytes(4, "little")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(bytes(head))
    with pytest.raises(GGUFError, match="unknown value type 99"):
        GGUFFile(corrupt)
