"""The training loss's logit adjustment (TrainConfig.logit_adjustment; Menon et al., "Long-tail
learning via logit adjustment", ICLR 2021): the loss sees logits + tau * log(class prior), the served
model its plain logits, so a model does not learn the training set's class shares as evidence."""

from __future__ import annotations

import numpy as np
import torch


def logit_offset(labels: np.ndarray, weights: np.ndarray | None, n_classes: int, tau: float,
                 device: torch.device | str = "cpu") -> torch.Tensor | None:
    """tau * log(prior) of the logit-adjusted loss (Menon et al., ICLR 2021), the prior being the
    training labels' class shares under their loss weights; None when tau is 0. A class with no
    training example gets the smallest present share (its logit is not pushed to -inf)."""
    if tau == 0:
        return None
    counts = np.bincount(labels, weights=weights, minlength=n_classes).astype(np.float64)
    counts[counts <= 0] = counts[counts > 0].min()
    return torch.tensor(tau * np.log(counts / counts.sum()), dtype=torch.float32, device=device)


class AdjustedLoss(torch.nn.Module):
    """A cross-entropy loss that adds a fixed offset (logit_offset) to the logits it is given: the
    training and validation losses of a logit-adjusted run; with no offset, the plain loss."""

    def __init__(self, loss: torch.nn.CrossEntropyLoss, offset: torch.Tensor | None) -> None:
        super().__init__()
        self.loss, self.offset = loss, offset

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(logits if self.offset is None else logits + self.offset, y)
