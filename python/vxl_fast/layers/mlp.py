"""The MLP's gated activation."""

import torch
import torch.nn.functional as F


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for gate_up [..., 2F] = cat(gate, up), in its dtype (PyTorch rounds the
    fp32 silu to the dtype, then the product)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
