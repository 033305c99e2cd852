"""Pictures for the course: tokens, masks, attention maps, next-token probabilities.

Every function returns something a notebook can display (a matplotlib figure, HTML, or an
ipywidgets view) and is importable on its own so tests can run it. matplotlib, IPython and
ipywidgets are imported inside the functions: ``import minigemma`` never needs them.

Why this is package code while the tiny-MoE script and the slow MoE baselines live in notebooks/:
learners call these functions from their own notebooks on an installed package (``attention_maps``
and ``routing`` read any loaded model, not only the course's); STYLE.md has every course figure
come from a function here so that tests/test_viz.py can check what it draws; and it costs an
installed package nothing, since it needs no data files and no plotting library at import time.
"""

import html

import torch

PALETTE = ["#fde2e4", "#e2ece9", "#dfe7fd", "#fff1c1", "#e8dff5", "#d7f9f1", "#fce1e4", "#eaf4d3"]


def tokens_html(tokenizer, text, add_bos=False):
    """Colour-coded tokenisation: one coloured box per token, its id on hover."""
    from IPython.display import HTML

    spans = []
    for n, i in enumerate(tokenizer.encode(text, add_bos=add_bos)):
        piece = tokenizer.id_to_piece(i)
        shown = html.escape(piece.replace("\n", "↵").replace("\t", "→").replace(" ", "▁"))
        spans.append(f'<span title="id {i}" style="background:{PALETTE[n % len(PALETTE)]};'
                     f'padding:1px 2px;margin:1px;border-radius:3px;font-family:monospace">{shown}</span>')
    return HTML('<div style="line-height:2">' + "".join(spans) + "</div>")


def plot_next_tokens(logits, tokenizer, k=10, title="Next-token probabilities"):
    """logits: (vocab,) -> horizontal bar chart of the k most likely next tokens."""
    import matplotlib.pyplot as plt

    probs = logits.float().softmax(-1)
    top = torch.topk(probs, k)
    labels = [repr(tokenizer.decode([i])) for i in top.indices.tolist()]
    fig, ax = plt.subplots(figsize=(6, 0.35 * k + 0.8))
    ax.barh(range(k)[::-1], top.values.tolist(), color="#4c72b0")
    ax.set_yticks(range(k)[::-1], labels)
    ax.set_xlabel("probability")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_mask(mask, title="", ax=None):
    """(T, S) bool mask -> grid: dark = may attend. Rows are queries, columns keys."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    ax.imshow(mask.float().numpy(), cmap="Blues", vmin=0, vmax=1.3)
    ax.set_title(title)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    return ax.figure


@torch.no_grad()
def attention_maps(model, input_ids):
    """Run the model once and return each layer's attention probabilities: list of (H, T, T)."""
    attns = [layer.self_attn for layer in model.layers]
    for a in attns:
        a.record_probs = True
    try:
        model(input_ids)
        return [a.probs[0].float() for a in attns]
    finally:
        for a in attns:
            a.record_probs = False
            a.probs = None


def plot_attention(probs, labels=None, title="", ax=None):
    """probs: (T, S) -> heat map of who attends to whom."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    # square-root colour scale: faint links stay visible; the colorbar is labelled in probabilities
    im = ax.imshow(probs.numpy() ** 0.5, cmap="viridis", vmin=0, vmax=1)
    bar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = [0, 0.01, 0.05, 0.2, 0.5, 1]
    bar.set_ticks([t ** 0.5 for t in ticks], labels=[str(t) for t in ticks])
    bar.set_label("attention probability (square-root scale)", fontsize=7)
    if labels is not None and len(labels) <= 40:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("key (attended to)", fontsize=8)
    ax.set_ylabel("query (attending)", fontsize=8)
    ax.set_title(title)
    return ax.figure


def attention_explorer(model, tokenizer, text):
    """An ipywidgets view: choose a layer and a head, see its attention map over ``text``."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    ids = torch.tensor([tokenizer.encode(text, add_bos=True)])
    maps = attention_maps(model, ids)
    labels = [tokenizer.decode([i]) for i in ids[0].tolist()]
    kinds = model.config.layer_types

    def show(layer, head):
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        kind = "sliding" if kinds[layer] == "sliding_attention" else "global"
        plot_attention(maps[layer][head], labels, f"layer {layer} ({kind}), head {head}", ax)
        plt.show()

    return widgets.interactive(show, layer=widgets.IntSlider(0, 0, len(maps) - 1, description="layer"),
                               head=widgets.IntSlider(0, 0, maps[0].shape[0] - 1, description="head"))


def plot_rope_angles(inv_freqs: dict, positions=64):
    """{label: (d/2,) frequencies} -> how far each dimension pair has turned after each position."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(inv_freqs), figsize=(5 * len(inv_freqs), 3.2), squeeze=False)
    pos = torch.arange(positions).float()
    for ax, (label, f) in zip(axes[0], inv_freqs.items()):
        angles = torch.remainder(pos[:, None] * f[None, :], 2 * torch.pi)  # (positions, d/2)
        im = ax.imshow(angles.T.numpy(), aspect="auto", cmap="twilight", vmin=0, vmax=2 * torch.pi)
        bar = fig.colorbar(im, ax=ax)
        bar.set_ticks([0, torch.pi / 2, torch.pi, 3 * torch.pi / 2, 2 * torch.pi], labels=["0", "¼ turn", "½", "¾", "1 turn"])
        bar.set_label("angle turned (mod one turn)", fontsize=8)
        ax.set_title(label)
        ax.set_xlabel("position")
        ax.set_ylabel("dimension pair i")
    fig.tight_layout()
    return fig


def plot_rope_spectrum(inv_freqs: dict):
    """{label: (d/2,) frequencies} -> wavelength (tokens per full turn) of each pair, log scale.
    Pairs with frequency 0 (p-RoPE's pass-through lanes) are drawn at the top as 'never turns'."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.4))
    top = 1.0
    for label, f in inv_freqs.items():
        wavelength = (2 * torch.pi / f).numpy()  # inf where f == 0
        top = max(top, float(wavelength[f > 0].max()))
    for label, f in inv_freqs.items():
        wavelength = torch.where(f > 0, 2 * torch.pi / f.clamp(min=1e-30), torch.tensor(top * 10)).numpy()
        ax.plot(range(len(f)), wavelength, ".", ms=3, label=f"{label} ({int((f > 0).sum())} of {len(f)} pairs turn)")
    ax.axhline(top * 10, color="grey", lw=0.5, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("dimension pair i")
    ax.set_ylabel("tokens per full turn")
    ax.set_title("RoPE wavelengths (dotted line: pairs that never turn)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_layer_plan(configs: dict):
    """{name: TextConfig} -> one row per model, one cell per layer: sliding, global, or KV-shared."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    n = max(c.num_hidden_layers for c in configs.values())
    grid = torch.full((len(configs), n), float("nan"))
    for r, c in enumerate(configs.values()):
        for i in range(c.num_hidden_layers):
            grid[r, i] = (1 if c.is_global(i) else 0) + (2 if c.kv_donor(i) is not None else 0)
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(configs) + 1.2))
    cmap = ListedColormap(["#9ecae1", "#08519c", "#fdd0a2", "#d94801"])
    ax.imshow(grid.numpy(), cmap=cmap, vmin=0, vmax=3, aspect="auto")
    ax.set_yticks(range(len(configs)), list(configs))
    ax.set_xlabel("layer")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(4)]
    ax.legend(handles, ["sliding", "global", "sliding, KV-shared", "global, KV-shared"], ncol=4,
              loc="upper center", bbox_to_anchor=(0.5, -0.35), fontsize=8)
    fig.tight_layout()
    return fig


@torch.no_grad()
def routing(model, input_ids):
    """Run the model once; for every MoE layer return a (T, E) matrix of the router's final
    weights (0 for experts a token did not choose)."""
    seen = []
    hooks = [layer.router.register_forward_hook(lambda m, i, o: seen.append(o)) for layer in model.layers]
    try:
        model(input_ids)
    finally:
        for h in hooks:
            h.remove()
    maps = []
    for weights, index, probs in seen:
        dense = torch.zeros(probs.shape)  # (T, E)
        dense.scatter_(1, index, weights.float())
        maps.append(dense)
    return maps


def plot_routing(weights, labels, title="", ax=None, vmax=None):
    """weights: (T, E) -> token × expert heat map (give several panels one ``vmax`` and one colorbar)."""
    import matplotlib.pyplot as plt

    standalone = ax is None  # on a given axis the caller draws one colorbar for all panels
    if standalone:
        _, ax = plt.subplots(figsize=(6, 0.22 * len(labels) + 1))
    image = ax.imshow(weights.numpy(), cmap="magma_r", aspect="auto", vmin=0, vmax=vmax)
    if standalone:
        ax.figure.colorbar(image, ax=ax, label="router weight")
    ax.set_yticks(range(len(labels)), [repr(l)[1:-1] for l in labels], fontsize=7)
    ax.set_xticks(range(weights.shape[1]))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("expert")
    ax.set_title(title, fontsize=9)
    return ax.figure


def plot_expert_load(loads: dict, title="fraction of each kind's tokens choosing each expert", top_k=None):
    """{kind: (E,) fraction of tokens choosing each expert} -> grouped bars.

    Each token chooses top-k experts, so a kind's fractions sum to k, not 1; with ``top_k`` a dashed
    line marks k/E, what every expert would get if choices were spread evenly."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3))
    E, K = len(next(iter(loads.values()))), len(loads)
    for j, (kind, share) in enumerate(loads.items()):
        ax.bar([e + (j - K / 2 + 0.5) * 0.8 / K for e in range(E)], share.tolist(), 0.8 / K, label=kind)
    if top_k:
        ax.axhline(top_k / E, color="k", ls="--", lw=1, label=f"even spread, {top_k}/{E}")
    ax.set_xticks(range(E))
    ax.set_xlabel("expert")
    ax.set_ylabel("fraction of tokens" + (f"\n(sums to {top_k})" if top_k else ""))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def routing_explorer(model, vocab, texts: dict):
    """ipywidgets: pick a text and a layer; see the token × expert map and the expert load."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def show(text, layer):
        ids = vocab.encode(texts[text])[:40]
        w = routing(model, torch.tensor([ids]))[layer]
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 0.22 * len(ids) + 1.2), gridspec_kw={"width_ratios": [3, 2]})
        plot_routing(w, vocab.pieces(ids), f"{text}, layer {layer}", a)
        fig.colorbar(a.images[0], ax=a, label="router weight")
        b.bar(range(w.shape[1]), (w > 0).float().mean(0).tolist(), color="#4c72b0")
        b.set_xlabel("expert")
        b.set_title(f"fraction of tokens choosing each expert (sums to {model.config.top_k_experts})", fontsize=9)
        fig.tight_layout()
        plt.show()

    return widgets.interactive(show, text=widgets.Dropdown(options=list(texts), description="text"),
                               layer=widgets.IntSlider(0, 0, len(model.layers) - 1, description="layer"))


def plot_sandwich_layer(ax=None):
    """A diagram of one Gemma decoder layer: norm → attention → norm → add, norm → MLP → norm → add."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.2))
    boxes = [("input\nnorm", "#dfe7fd"), ("attention", "#fde2e4"), ("post-attn\nnorm", "#dfe7fd"), ("+", "white"),
             ("pre-FFW\nnorm", "#dfe7fd"), ("MLP", "#fff1c1"), ("post-FFW\nnorm", "#dfe7fd"), ("+", "white")]
    xs = [1.2 + 1.25 * i for i in range(len(boxes))]
    ax.annotate("", xy=(xs[-1] + 1.2, 0), xytext=(0, 0), arrowprops=dict(arrowstyle="->", lw=2, color="#555"))
    ax.text(0, 0.25, "residual stream x", fontsize=9, color="#555")
    for n, ((label, colour), x) in enumerate(zip(boxes, xs)):
        if label == "+":
            ax.add_patch(plt.Circle((x, 0), 0.22, fc="white", ec="black", zorder=3))
            ax.text(x, 0, "+", ha="center", va="center", fontsize=14, zorder=4)
            continue
        ax.add_patch(plt.Rectangle((x - 0.5, 1.0), 1.0, 0.8, fc=colour, ec="black", zorder=3))
        ax.text(x, 1.4, label, ha="center", va="center", fontsize=8, zorder=4)
        if n in (0, 4):  # the branch leaves the stream
            ax.annotate("", xy=(x, 1.0), xytext=(x, 0), arrowprops=dict(arrowstyle="->", color="#555"))
        if n in (2, 6):  # ... and comes back to the next "+"
            ax.annotate("", xy=(xs[n + 1], 0.22), xytext=(x + 0.5, 1.4),
                        arrowprops=dict(arrowstyle="->", color="#555", connectionstyle="angle,angleA=0,angleB=90"))
        else:
            ax.annotate("", xy=(x + 0.75, 1.4), xytext=(x + 0.5, 1.4), arrowprops=dict(arrowstyle="->", color="#555"))
    ax.set_xlim(-0.2, xs[-1] + 1.4)
    ax.set_ylim(-0.6, 2.1)
    ax.axis("off")
    ax.set_title("one Gemma layer: each branch is normed on the way in and on the way out, then added")
    return ax.figure


def plot_rope_clock(inv_freqs, positions, labels=None):
    """RoPE as clock hands: for a few dimension pairs (inv_freqs: (n,)), where the hand points
    at each of ``positions``. Fast pairs spin, slow pairs barely move."""
    import matplotlib.pyplot as plt

    n = len(inv_freqs)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9))
    cmap = plt.get_cmap("viridis")
    for j, (ax, f) in enumerate(zip(axes, inv_freqs)):
        ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="#bbb"))
        for m, p in enumerate(positions):
            a = float(p) * float(f)
            ax.annotate("", xy=(torch.cos(torch.tensor(a)).item(), torch.sin(torch.tensor(a)).item()), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="->", color=cmap(m / max(1, len(positions) - 1)), lw=1.5))
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.2, 1.2)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(labels[j] if labels else f"pair turning {float(f):.3g} rad/token", fontsize=8)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(min(positions), max(positions)))
    fig.colorbar(sm, ax=list(axes), fraction=0.02, pad=0.02).set_label("position", fontsize=8)
    return fig
