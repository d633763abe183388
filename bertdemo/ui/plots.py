"""Matplotlib figures for the UI: attention heatmaps, training curves, confusion matrices, and the
Embeddings tab's similarity heatmap, projection and per-layer lines.

Figures are made with `matplotlib.figure.Figure` directly, not pyplot: no global figure registry,
so concurrent requests cannot draw on each other's figures and nothing needs closing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from bertdemo.model.embeddings import WordComparison

MAX_PAIRS_PLOTTED = 15  # lines in the per-layer plot; more are unreadable
LABEL_BAND_IN = 0.4  # inches kept free at the top of a figure: gr.Plot lays its label over the image there


def layout_under_label(fig: Figure) -> None:
    """tight_layout with a band free at the top, so gr.Plot's label does not hide a title or the top
    of the axes (the Train tab's plots had their tops cut off by it)."""
    fig.tight_layout(rect=(0, 0, 1, 1 - LABEL_BAND_IN / fig.get_figheight()))


def attention_heatmap(tokens: Sequence[str], weights: np.ndarray, title: str) -> Figure:
    n = len(tokens)
    size = min(12, 2.5 + 0.32 * n)
    fig = Figure(figsize=(size, size * 0.9), dpi=90)
    ax = fig.add_subplot()
    im = ax.imshow(weights, cmap="viridis", vmin=0, vmax=float(weights.max()) or 1)
    ax.set_xticks(range(n), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(n), tokens, fontsize=8)
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("token (query)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def training_curves(history: Sequence[dict]) -> Figure:
    fig = Figure(figsize=(7, 3.8), dpi=90)
    ax = fig.add_subplot()
    axes = [ax]
    if history:
        steps = [h["step"] for h in history]
        ax.plot(steps, [h["train_loss"] for h in history], label="training loss (mean of last 20 steps)")
        val = [h for h in history if h.get("val_loss") is not None]
        if val:
            ax.plot([h["step"] for h in val], [h["val_loss"] for h in val], "o-", label="validation loss")
            ax2 = ax.twinx()
            ax2.plot([h["step"] for h in val], [h["val_macro_f1"] for h in val], "s--", color="tab:green",
                     label="validation macro-F1")
            ax2.set_ylim(0, 1)
            ax2.set_ylabel("macro-F1")
            axes.append(ax2)
        # one legend for both axes, under the plot: it never covers a curve
        handles = [h for a in axes for h in a.get_legend_handles_labels()[0]]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncol=len(handles), fontsize=8, frameon=False)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    layout_under_label(fig)
    return fig


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> Figure:
    m = np.asarray(matrix)
    fig = Figure(figsize=(4.2, 3.8), dpi=90)
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    layout_under_label(fig)
    return fig


def reliability_diagram(bins: Sequence[dict], ece: float | None) -> Figure:
    """Accuracy against mean confidence per confidence bin (training/evaluation.py): on the diagonal
    a shown probability of 80% is right 80% of the time; bar widths follow the bins' sizes."""
    fig = Figure(figsize=(4.2, 3.8), dpi=90)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    full = [b for b in bins if b.get("n")]
    total = sum(b["n"] for b in full) or 1
    for b in full:
        ax.bar((b["low"] + b["high"]) / 2, b["accuracy"], width=(b["high"] - b["low"]) * 0.9,
               color="tab:blue", alpha=0.25 + 0.75 * b["n"] / total)
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], marker="o", color="tab:blue",
            label="this version")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {ece:.3f})" if ece is not None else "Reliability")
    ax.legend(loc="upper left", fontsize=8)
    layout_under_label(fig)
    return fig


SENSE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _sense_colour(comparison: WordComparison, i: int) -> str:
    if comparison.senses is None:
        return "tab:blue"
    order = list(dict.fromkeys(comparison.senses))
    return SENSE_COLOURS[order.index(comparison.senses[i]) % len(SENSE_COLOURS)]


def similarity_heatmap(comparison: WordComparison, static: bool = False) -> Figure:
    """Cosine similarity between every pair of occurrences (contextual at the chosen layer, or
    the static word-embedding rows)."""
    sims = comparison.static_similarity if static else comparison.similarity  # (N, N)
    labels = comparison.labels
    n = len(labels)
    size = min(9.0, 3.0 + 0.45 * n)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    # the colour scale starts just below the lowest similarity (at most 0.9): contextual vectors of
    # one word are all fairly similar, and a 0..1 scale would paint them all the same yellow
    vmin = min(0.9, np.floor(float(sims.min()) * 10) / 10)
    im = ax.imshow(sims, vmin=vmin, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(n), labels, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), labels)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{sims[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if sims[i, j] > vmin + 0.6 * (1 - vmin) else "white")
    if comparison.senses is not None:
        for t, i in zip(ax.get_yticklabels(), range(n)):
            t.set_color(_sense_colour(comparison, i))
    title = ("static embedding" if static
             else f"layer {comparison.layer}" + (" (input embeddings)" if comparison.layer == 0 else ""))
    ax.set_title(f"'{comparison.word}', {title}", fontsize=10, loc="right")  # left: Gradio's label
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def projection(comparison: WordComparison) -> Figure:
    """2-D PCA of the occurrences' vectors at the chosen layer, coloured by sense when known."""
    xy = comparison.projection()  # (N, 2)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for i, (x, y) in enumerate(xy):
        ax.scatter([x], [y], s=60, color=_sense_colour(comparison, i))
        ax.annotate(comparison.labels[i], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9)
    if comparison.senses is not None:
        for sense in dict.fromkeys(comparison.senses):
            ax.scatter([], [], color=_sense_colour(comparison, comparison.senses.index(sense)), label=sense)
        ax.legend(fontsize=8)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"'{comparison.word}', layer {comparison.layer}", fontsize=10, loc="right")
    fig.tight_layout()
    return fig


def layer_lines(comparison: WordComparison) -> Figure:
    """Each pair's similarity from layer 0 to the last; with senses, same-sense pairs solid and
    different-sense pairs dashed, plus their means. At most MAX_PAIRS_PLOTTED pairs are drawn."""
    sims = comparison.layer_similarity  # (L+1, N, N)
    layers = np.arange(sims.shape[0])
    pairs = comparison.pairs()
    fig = Figure(figsize=(8.5, 5))
    ax = fig.add_subplot()
    for i, j in pairs[:MAX_PAIRS_PLOTTED]:
        same = comparison.senses is not None and comparison.senses[i] == comparison.senses[j]
        style = "-" if same or comparison.senses is None else "--"
        ax.plot(layers, sims[:, i, j], style, marker="o", markersize=3, linewidth=1, alpha=0.8,
                label=f"{comparison.labels[i]}–{comparison.labels[j]}")
    best = comparison.best_layer()
    if best is not None:
        ax.axvline(best, color="grey", linestyle=":", label=f"best layer ({best})")
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="-.", label="static embedding (always 1.0)")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = input embeddings)")
    ax.set_ylabel("cosine similarity")
    shown = "" if len(pairs) <= MAX_PAIRS_PLOTTED else f" (first {MAX_PAIRS_PLOTTED} of {len(pairs)} pairs)"
    ax.set_title(f"'{comparison.word}'{shown}", fontsize=10, loc="right")
    # outside the axes, so the lines stay visible; 10 pt, the size of the tick labels: the figure is
    # shown scaled down to half the page, where 7 pt could not be read
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
