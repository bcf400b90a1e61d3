"""The MLPs' activations: the decoder's SiLU gate, the vision tower's quick GELU."""

import torch
import torch.nn.functional as F

from .. import ops


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for gate_up [..., 2F] = cat(gate, up), in its dtype (PyTorch rounds the
    fp32 silu to the dtype, then the product)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def quick_gelu(h: torch.Tensor) -> torch.Tensor:
    """CLIP's ``h * sigmoid(1.702 h)``, each step rounded to h's dtype (sigmoid in fp32)."""
    return h * torch.sigmoid(1.702 * h)


def linear_quick_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """fc1 and its activation as the PyTorch code runs them: ``quick_gelu(F.linear(x, weight, bias))``
    (the bias added inside the GEMM)."""
    return quick_gelu(F.linear(x, weight, bias))


def linear_bias_quick_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """fc1's product without its bias, then the bias add and the activation in one op
    (``ops.bias_quick_gelu``). NOTE: the bias is added to the product rounded to the dtype, where
    the GEMM of ``linear_quick_gelu`` adds it before that rounding; in bf16 about 30% of random
    products' h then differ by an ulp."""
    return ops.bias_quick_gelu(F.linear(x, weight), bias)
