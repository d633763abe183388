"""How the classifier turns token vectors into one sentence vector for its head: BERT's own
pooler ("cls": tanh(dense(the [CLS] vector))) or the mean of the token vectors over the attention
mask ("mean": tanh(dense(mean))), which is how all-MiniLM-L6-v2, the packaged encoder, was trained
to represent a sentence (its pooler weights were never trained: zero bias, tiny weights).

"mean" swaps the model's pooler for MeanPooler, which keeps the same `dense` layer (so the saved
weights have the same names and `save_pretrained` / `from_pretrained` work unchanged) and records
the choice in the model's config (`bertdemo_pooling`), so a saved version loads with it. The
attention mask reaches the pooler through a forward pre-hook on the model, per calling thread."""

from __future__ import annotations

import threading

import torch

POOLING_KEY = "bertdemo_pooling"
POOLINGS = ("cls", "mean")


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) token vectors -> (B, H): their mean over the tokens the mask keeps (no padding)."""
    m = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


class MeanPooler(torch.nn.Module):
    """Drop-in for BertPooler: tanh(dense(mean of the token vectors, padding excluded))."""

    def __init__(self, pooler: torch.nn.Module) -> None:
        super().__init__()
        self.dense = pooler.dense
        self.activation = pooler.activation
        self.masks: dict[int, torch.Tensor | None] = {}  # calling thread -> attention mask of its forward

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.masks.get(threading.get_ident())
        if mask is None or tuple(mask.shape) != tuple(hidden_states.shape[:2]):
            pooled = hidden_states.mean(dim=1)
        else:
            pooled = masked_mean(hidden_states, mask)
        return self.activation(self.dense(pooled))


def _remember_mask(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
    pooler = getattr(module.base_model, "pooler", None)
    if isinstance(pooler, MeanPooler):
        mask = kwargs.get("attention_mask")
        pooler.masks[threading.get_ident()] = mask if isinstance(mask, torch.Tensor) else None


def pooling_of(model: torch.nn.Module) -> str:
    return str(getattr(model.config, POOLING_KEY, "cls"))


def use_pooling(model: torch.nn.Module, pooling: str) -> torch.nn.Module:
    """Make `model` (a *ForSequenceClassification with a BERT-style pooler) pool as `pooling` says."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    base = model.base_model
    if pooling == "mean" and not isinstance(getattr(base, "pooler", None), MeanPooler):
        if getattr(base, "pooler", None) is None or not hasattr(base.pooler, "dense"):
            raise ValueError(f"{type(model).__name__} has no BERT-style pooler to replace with mean pooling")
        base.pooler = MeanPooler(base.pooler)
        model.register_forward_pre_hook(_remember_mask, with_kwargs=True)
    elif pooling == "cls" and isinstance(getattr(base, "pooler", None), MeanPooler):
        raise ValueError("this model was trained with mean pooling; it cannot be switched back to [CLS]")
    setattr(model.config, POOLING_KEY, pooling)
    return model
