"""Post-load swaps (``swap.py``): the one-row float32 product over row blocks (``rowblocks.py``) equals
F.linear; oneDNN-packed bf16 layers (``pack.py``) give F.linear's numbers bit for bit; ``load``
swaps layers of plain ``nn.Linear`` model code and keeps whole models (Gemma 3, and the three Gemma 4
styles) as they were; and the errors."""

import pytest
import torch
import torch.nn.functional as F

import minigemma
import minigemma.pack as pack
from minigemma.generate import generate_ids
from minigemma.pack import PackedLinear, pack_model
from minigemma.quantize import weight_bytes
from minigemma.rowblocks import FEW_ROWS, ROW_BLOCKS, RowBlockEmbedding, RowBlockLinear, linear
from minigemma.weights import build_model, read_gguf
from minigemma.gguf import GGUFFile

from .test_gemma4 import STYLES, make_tiny_gemma4


@pytest.mark.parametrize("N,K", [(256, 64), (2048, 640), (640, 2048), (262144 // 64, 640), (100, 64)])
@pytest.mark.parametrize("shape", [(1,), (1, 1), (1, 1, 1), (2, 1), (1, 7), (2, 32), (3, 40)])  # 120 rows: F.linear
def test_linear_equals_f_linear(N, K, shape):
    gen = torch.Generator().manual_seed(N + K)
    w, x = torch.randn(N, K, generator=gen), torch.randn(*shape, K, generator=gen)
    y = linear(x, w)
    assert y.shape == (*shape, N)
    torch.testing.assert_close(y, F.linear(x, w), atol=1e-4, rtol=1e-5)  # float32: the sums (~25) in another order
    assert torch.equal(linear(x.bfloat16(), w.bfloat16()), F.linear(x.bfloat16(), w.bfloat16()))  # bf16: untouched


def test_few_rows_take_the_batched_product_and_many_rows_or_odd_shapes_do_not(monkeypatch):
    calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda *a: calls.append(a[1].shape) or bmm(*a))
    w = torch.randn(64, 32)
    linear(torch.randn(1, 1, 32), w)
    linear(torch.randn(1, 5, 32), w)  # a speculative verification pass
    assert calls == [(ROW_BLOCKS, 32, 1), (ROW_BLOCKS, 32, 5)]
    linear(torch.randn(FEW_ROWS + 1, 32), w)  # many rows: the library's matrix-matrix product
    linear(torch.randn(1, 32), torch.randn(40, 32))  # 40 rows do not split into 16 blocks
    linear(torch.randn(1, 32), torch.randn(32, 64).T)  # a non-contiguous weight cannot be viewed as blocks
    linear(torch.randn(0, 32), w)  # no rows at all
    assert len(calls) == 2


def test_model_code_is_plain_and_load_swaps_in_row_blocks_with_the_same_weights_and_keys(gguf_path):
    config, state = read_gguf(GGUFFile(gguf_path), progress=False)
    plain = build_model(config, state)  # the model as its code builds it
    kinds = {type(m) for m in plain.modules()}
    assert torch.nn.Linear in kinds and RowBlockLinear not in kinds  # attention and MLP are nn.Linear
    model, _ = minigemma.load(gguf_path, progress=False)  # float32: row blocks swapped in after loading
    assert all(type(m) is RowBlockLinear for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert type(model.embed_tokens) is RowBlockEmbedding
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert all(model.state_dict()[k].data_ptr() != 0 and torch.equal(model.state_dict()[k], v)
               for k, v in plain.state_dict().items())
    ids = torch.tensor([[2, 651, 6037, 529, 7127, 563]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), plain(ids), atol=1e-4, rtol=1e-5)  # the same sums, another order
        cache = minigemma.KVCache(config, 1, 8)
        model(ids, cache=cache)
        step = model(torch.tensor([[236764]]), cache=cache)  # one row: the row-block product
        torch.testing.assert_close(step[0, -1], plain(torch.cat([ids, torch.tensor([[236764]])], 1))[0, -1],
                                   atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("N,K", [(256, 64), (2048, 640), (640, 2048), (4096, 640), (262144 // 16, 640)])
@pytest.mark.parametrize("rows", [1, 3, 40])
def test_packed_bf16_layer_equals_f_linear_up_to_a_bf16_step_or_two(N, K, rows):
    gen = torch.Generator().manual_seed(N)
    w, x = torch.randn(N, K, generator=gen).bfloat16(), torch.randn(2, rows, K, generator=gen).bfloat16()
    packed, plain = PackedLinear(w)(x), F.linear(x, w)
    # oneDNN's kernel may sum in another order on some CPUs (AVX-512): then a rare element differs by
    # a bf16 step or two (measured on an AVX-512 Xeon: 1 in 2,048 elements of the (2048, 640) case, 1 in 65,536
    # of notebook 12's (65536, 640) one, two steps there), never more in our runs.
    torch.testing.assert_close(packed, plain, rtol=2 ** -6, atol=0)  # two bf16 steps: up to 2^-6 of the value
    assert (packed != plain).float().mean() < 0.01


def assert_same_model_up_to_bf16_rounding(packed, plain, ids):
    """Packed and plain bf16 logits agree within bf16 rounding, and where their greedy choices differ,
    the plain model's best two tokens were tied within two bf16 roundings (a near-tie, not an error)."""
    a, b = packed(ids).float(), plain(ids).float()  # (B, T, vocab)
    torch.testing.assert_close(a, b, rtol=2 ** -6, atol=2 ** -3)
    differ = a.argmax(-1) != b.argmax(-1)  # (B, T)
    top2 = b.topk(2, dim=-1).values  # (B, T, 2)
    gap = top2[..., 0] - top2[..., 1]
    assert (gap[differ] <= 2 * 2 ** -7 * top2[..., 0][differ].abs()).all(), gap[differ]


@pytest.mark.parametrize("style", sorted(STYLES))
@torch.no_grad()
def test_packed_gemma4_models_equal_unpacked_ones(style, tmp_path, hf_tokenizer_dir):
    make_tiny_gemma4(tmp_path, hf_tokenizer_dir, style)
    plain, _ = minigemma.load(tmp_path, dtype=torch.bfloat16, progress=False)
    packed, _ = minigemma.load(tmp_path, pack=True, progress=False)  # pack: bf16 by default
    assert packed.dtype == torch.bfloat16
    assert not any(isinstance(m, torch.nn.Linear) for name, m in packed.named_modules())
    ids = torch.randint(3, 262144, (2, 20), generator=torch.Generator().manual_seed(1))
    assert_same_model_up_to_bf16_rounding(packed, plain, ids)


@torch.no_grad()
def test_packed_real_model_equals_the_plain_one_up_to_rounding(gguf_path):
    plain, tok = minigemma.load(gguf_path, dtype=torch.bfloat16, progress=False)
    packed, _ = minigemma.load(gguf_path, pack=True, progress=False)
    prompt = tok.encode("The capital of France is", add_bos=True)
    text = prompt + list(generate_ids(plain, prompt, max_new_tokens=24))  # (a greedy text flips at near-ties)
    assert_same_model_up_to_bf16_rounding(packed, plain, torch.tensor([text]))
    assert packed.head(torch.zeros(1, 640, dtype=torch.bfloat16)).shape == (1, 262144)
    embedding = plain.embed_tokens.weight
    assert weight_bytes(packed) == weight_bytes(plain) + embedding.numel() * embedding.element_size()  # + the head copy


def test_pack_errors_name_the_problem(gguf_path, monkeypatch):
    with pytest.raises(ValueError, match="quantize= already packs"):
        minigemma.load(gguf_path, pack=True, quantize="int8", progress=False)
    with pytest.raises(ValueError, match="pack=True is for bfloat16 weights, not torch.float32"):
        minigemma.load(gguf_path, pack=True, dtype=torch.float32, progress=False)
    model, _ = minigemma.load(gguf_path, progress=False)
    with pytest.raises(ValueError, match="pack=True is for bfloat16"):
        pack_model(model)
    monkeypatch.setattr(pack, "can_pack", lambda: False)
    with pytest.raises(ValueError, match="oneDNN"):
        pack_model(model.to(torch.bfloat16))
