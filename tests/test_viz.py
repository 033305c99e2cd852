"""The course's pictures: each viz function runs and draws what it claims."""

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from minigemma import viz  # noqa: E402
from minigemma.attention import attention_mask  # noqa: E402
from minigemma.rope import inv_frequencies  # noqa: E402


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
    allowed = attention_mask(torch.arange(600), torch.arange(600), 512)
    assert maps[0][:, ~allowed].abs().max() == 0  # sliding layer: nothing outside the window
    assert maps[5][:, -1, :50].sum() > 0  # global layer: the last token still sees the start
    assert all(not layer.self_attn.record_probs for layer in model.layers)


def test_figures_and_widget(gemma):
    model, tok = gemma
    logits = torch.randn(262144)
    assert len(viz.plot_next_tokens(logits, tok, k=5).axes) == 1
    assert viz.plot_mask(attention_mask(torch.arange(8), torch.arange(8), 3)).axes
    assert len(viz.plot_rope_angles({"a": inv_frequencies(16, {"rope_theta": 1e4})}).axes) == 2  # plot + colorbar
    assert viz.plot_attention(torch.rand(5, 5), list("abcde")).axes
    widget = viz.attention_explorer(model, tok, "one two three")
    assert [c.description for c in widget.children[:2]] == ["layer", "head"]


def test_teaching_diagrams():
    assert viz.plot_sandwich_layer().axes
    fig = viz.plot_rope_clock(torch.tensor([1.0, 0.1]), [0, 1, 2, 3])
    assert len(fig.axes) == 3  # two clocks and the colorbar


def test_expert_load_axis_says_fractions_sum_to_top_k():
    loads = {"a": torch.tensor([1.0, 0.5, 0.5, 0.0]), "b": torch.tensor([0.0, 0.5, 0.5, 1.0])}
    ax = viz.plot_expert_load(loads, top_k=2).axes[0]
    assert "sums to 2" in ax.get_ylabel()
    assert any(line.get_ydata()[0] == 0.5 for line in ax.get_lines())  # the even-spread line, k/E = 2/4
