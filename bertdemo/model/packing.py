"""CPU kernel choices: bf16 Linear layers for inference (the PyTorch serving path,
`Classifier.serving_model`), and the attention kernel for forwards that a backward follows."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

log = logging.getLogger(__name__)


def attention_for_backward(device: torch.device) -> contextlib.AbstractContextManager:
    """The attention kernel for a forward that a backward follows (training, attributions). On the
    CPU, SDPA's math kernel: the fused (flash) kernel, which PyTorch picks whenever attention
    dropout is off, trains and attributes much slower on this CPU (bench/README.md, "Figures behind
    design choices"). Elsewhere PyTorch's choice stands."""
    return sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else contextlib.nullcontext()


def cast_linear(lin: torch.nn.Linear, dtype: torch.dtype) -> torch.nn.Linear:
    out = torch.nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None, device="meta")
    out.weight = torch.nn.Parameter(lin.weight.detach().to(dtype), requires_grad=False)
    out.bias = lin.bias  # shared; autocast casts it (a few hundred values)
    return out


class PackedLinear(torch.nn.Module):
    """A bf16 Linear for CPU inference with its weight pre-packed in oneDNN's blocked layout
    once, as torch.compile's freezing pass does (`mkldnn._reorder_linear_weight` and
    `mkldnn._linear_pointwise`), instead of on every call. No autograd."""

    def __init__(self, lin: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = lin.in_features, lin.out_features
        # plain attributes, not parameters: the packed tensor is opaque and never saved or trained
        self.packed = torch.ops.mkldnn._reorder_linear_weight(lin.weight.detach().to(torch.bfloat16))
        self.bias = None if lin.bias is None else lin.bias.detach().to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.packed, self.bias, "none", [], "")

    _available: bool | None = None

    @classmethod
    def available(cls) -> bool:
        """True when this torch build packs bf16 weights and a packed layer matches F.linear."""
        if cls._available is None:
            try:
                lin = torch.nn.Linear(16, 8)
                x = torch.randn(2, 3, 16)
                ref = torch.nn.functional.linear(x.bfloat16(), lin.weight.bfloat16(), lin.bias.bfloat16())
                cls._available = bool(torch.allclose(PackedLinear(lin)(x).float(), ref.float(), atol=1e-2))
            except (AttributeError, RuntimeError, NotImplementedError):
                cls._available = False
            if not cls._available:
                log.info("oneDNN weight packing is not available: serving with plain bf16 weights")
        return cls._available
