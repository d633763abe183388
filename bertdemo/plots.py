"""Matplotlib figures for the UI (no Gradio here): attention heatmaps, training curves,
confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are rendered by Gradio, never shown in a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def attention_heatmap(tokens: Sequence[str], weights: np.ndarray, title: str) -> Figure:
    n = len(tokens)
    size = min(12, 2.5 + 0.32 * n)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=90)
    im = ax.imshow(weights, cmap="viridis", vmin=0, vmax=float(weights.max()) or 1)
    ax.set_xticks(range(n), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(n), tokens, fontsize=8)
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("token (query)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    plt.close(fig)
    return fig


def training_curves(history: Sequence[dict]) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=90)
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
            ax2.legend(loc="upper right", fontsize=8)
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    fig.tight_layout()
    plt.close(fig)
    return fig


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> Figure:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=90)
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    plt.close(fig)
    return fig
