"""The course's pictures: each viz function draws exactly the data it is given (values, labels,
colour limits, number of marks), read back from the matplotlib objects it returns."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minigemma import viz  # noqa: E402
from minigemma.attention import attention_mask  # noqa: E402
from minigemma.rope import inv_frequencies  # noqa: E402


def image_of(ax):
    """The one image drawn on ``ax`` -> (its pixel values as a numpy array, its colour limits)."""
    assert len(ax.images) == 1
    return np.asarray(ax.images[0].get_array()), ax.images[0].get_clim()


def test_tokens_html_shows_every_piece(gemma):
    tok = gemma[1]
    html = viz.tokens_html(tok, "Hi <start_of_turn>\tthere").data
    assert html.count("<span") == len(tok.encode("Hi <start_of_turn>\tthere"))
    assert "&lt;start_of_turn&gt;" in html and "→" in html


def test_attention_maps_are_distributions_and_respect_the_window(gemma, sample_text):
    model, tok = gemma
    ids = torch.tensor([tok.encode(sample_text, add_bos=True)[:600]])
    maps = viz.attention_maps(model, ids)
    assert len(maps) == 18 and maps[0].shape == (4, 600, 600)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(4, 600))
    q, k = torch.arange(600)[:, None], torch.arange(600)[None, :]
    outside = (k > q) | (q - k >= 512)  # the 270M's 512-token window, written out: future or too far back
    assert maps[0][:, outside].abs().max() == 0  # sliding layer: nothing outside the window
    assert maps[0][:, ~outside].min() > 0  # ... and a softmax leaves nothing inside it at exactly 0
    assert maps[5][:, -1, :50].sum() > 0  # global layer: the last token still sees the start
    assert all(not layer.self_attn.record_probs for layer in model.layers)


def test_next_token_bars_are_the_top_k_probabilities(gemma):
    tok = gemma[1]
    logits = torch.randn(262144, generator=torch.Generator().manual_seed(0))
    ax = viz.plot_next_tokens(logits, tok, k=5, title="next").axes[0]
    top = logits.softmax(-1).topk(5)
    bars = sorted(ax.patches, key=lambda b: -b.get_y())  # top bar first: the most likely token
    np.testing.assert_allclose([b.get_width() for b in bars], top.values.numpy(), rtol=1e-6)
    labels = {round(t.get_position()[1]): t.get_text() for t in ax.get_yticklabels()}
    assert [labels[round(b.get_y() + b.get_height() / 2)] for b in bars] == [repr(tok.decode([i]))
                                                                             for i in top.indices.tolist()]
    assert ax.get_title() == "next"


def test_mask_grid_is_the_mask():
    mask = attention_mask(torch.arange(8), torch.arange(8), 3)
    ax = viz.plot_mask(mask, "window 3").axes[0]
    pixels, clim = image_of(ax)
    np.testing.assert_array_equal(pixels, mask.float().numpy())
    assert pixels.sum() == 3 * 8 - 3  # each query sees itself and 2 before (fewer at the start)
    assert clim == (0, 1.3) and ax.get_title() == "window 3"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("key position", "query position")


def test_attention_heat_map_is_the_square_root_of_the_probabilities_with_labels():
    probs = torch.rand(5, 5, generator=torch.Generator().manual_seed(1)).softmax(-1)
    fig = viz.plot_attention(probs, list("abcde"), "map")
    ax, bar = fig.axes  # the map and its colorbar
    pixels, clim = image_of(ax)
    np.testing.assert_allclose(pixels, probs.numpy() ** 0.5, rtol=1e-6)
    assert clim == (0, 1)
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcde")
    assert [t.get_text() for t in ax.get_yticklabels()] == list("abcde")
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0", "0.01", "0.05", "0.2", "0.5", "1"]
    np.testing.assert_allclose(bar.get_yticks(), np.sqrt([0, 0.01, 0.05, 0.2, 0.5, 1]))


def test_rope_angles_are_position_times_frequency_mod_one_turn():
    freqs = {"local": inv_frequencies(16, {"rope_theta": 1e4}), "global": inv_frequencies(16, {"rope_theta": 1e6})}
    fig = viz.plot_rope_angles(freqs, positions=20)
    assert len(fig.axes) == 4  # a plot and a colorbar per frequency set
    plots = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(plots) == 2
    for ax, (label, f) in zip(plots, freqs.items()):
        pixels, clim = image_of(ax)
        expected = np.array([[(p * float(fi)) % (2 * math.pi) for p in range(20)] for fi in f])  # (pairs, positions)
        np.testing.assert_allclose(pixels, expected, rtol=1e-5, atol=1e-5)
        assert ax.get_title() == label and clim == (0, 2 * math.pi)


def test_attention_explorer_has_a_slider_per_layer_and_head(gemma):
    model, tok = gemma
    widget = viz.attention_explorer(model, tok, "one two three")
    layer, head = widget.children[:2]
    assert (layer.description, layer.min, layer.max) == ("layer", 0, 17)
    assert (head.description, head.min, head.max) == ("head", 0, 3)


def test_sandwich_diagram_names_every_step_in_order():
    ax = viz.plot_sandwich_layer().axes[0]
    texts = [t.get_text() for t in ax.texts if t.get_text() != ""]
    assert texts == ["residual stream x", "input\nnorm", "attention", "post-attn\nnorm", "+",
                     "pre-FFW\nnorm", "MLP", "post-FFW\nnorm", "+"]


def test_rope_clock_hands_point_at_position_times_frequency():
    freqs, positions = torch.tensor([1.0, 0.1]), [0, 1, 2, 3]
    fig = viz.plot_rope_clock(freqs, positions)
    assert len(fig.axes) == 3  # two clocks and the colorbar
    for ax, f in zip(fig.axes[:2], freqs.tolist()):
        tips = [a.xy for a in ax.texts]  # one arrow per position, from the centre to the hand's tip
        np.testing.assert_allclose(tips, [(math.cos(p * f), math.sin(p * f)) for p in positions], atol=1e-6)


def test_expert_load_bars_are_the_loads_and_the_line_is_k_over_e():
    loads = {"a": torch.tensor([1.0, 0.5, 0.5, 0.0]), "b": torch.tensor([0.0, 0.5, 0.5, 1.0])}
    ax = viz.plot_expert_load(loads, top_k=2).axes[0]
    assert "sums to 2" in ax.get_ylabel()
    bars = sorted(ax.patches, key=lambda b: b.get_x())  # a, b side by side for each expert
    assert [b.get_height() for b in bars] == [1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.0, 1.0]
    lines = ax.get_lines()
    assert len(lines) == 1 and list(lines[0].get_ydata()) == [0.5, 0.5]  # the even spread, k/E = 2/4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["even spread, 2/4", "a", "b"]


def test_routing_heat_map_is_the_weights():
    weights = torch.rand(3, 6, generator=torch.Generator().manual_seed(2))
    fig = viz.plot_routing(weights, ["x", "y\n", "z"], vmax=0.9)
    pixels, clim = image_of(fig.axes[0])
    np.testing.assert_allclose(pixels, weights.numpy())
    assert clim == (0, 0.9)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["x", "y\\n", "z"]
