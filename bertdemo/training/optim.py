"""What the optimizer is given: AdamW's parameter groups (weight decay on matrices only, an optional
learning rate per layer) and the dropout rate of a run."""

from __future__ import annotations

import re

import torch


def set_dropout(model: torch.nn.Module, p: float) -> int:
    """Give every dropout layer of `model` the rate `p` (for training; evaluation never drops);
    returns how many there are."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in layers:
        m.p = p
    return len(layers)


_LAYER_RE = re.compile(r"\.layer\.(\d+)\.")


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW's parameter groups: weight decay on matrices only (not biases and LayerNorms), and with
    layer_decay < 1 a learning rate per depth: the head (and pooler) at `lr`, encoder layer i of L at
    lr * layer_decay**(L - i), the embeddings at lr * layer_decay**(L + 1). Trainable parameters only."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_layers = 1 + max((int(m.group(1)) for n, _ in named if (m := _LAYER_RE.search(n))), default=-1)

    def depth(name: str) -> int:  # 0: the embeddings .. n_layers + 1: above the encoder
        if (m := _LAYER_RE.search(name)):
            return int(m.group(1)) + 1
        return 0 if "embeddings" in name else n_layers + 1

    groups: dict[tuple[int, bool], dict] = {}
    for name, p in named:
        d = depth(name) if layer_decay != 1.0 else n_layers + 1
        key = (d, p.ndim >= 2)
        g = groups.setdefault(key, {"params": [], "weight_decay": weight_decay if key[1] else 0.0,
                                    "lr": lr * layer_decay ** (n_layers + 1 - d)})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]
