"""The decode step's attention context: one token at a position held in device memory.

Nothing in it depends on a host value that changes from token to token — the RoPE rows are
gathered at the device position, K/V are written at that slot with ``index_copy_``, and
attention reads every slot of the cache with the number in use taken from device memory — so
the same step can be captured once in a CUDA graph and replayed for every token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import apply_rope

# q [H, 1, d]; k, v [Hkv, C, d] (the whole cache layer); used: int32 [1] slots in use;
# bounds: int32 [2, 2] = [[0, 1], [0, C]] (the varlen kernel's sequence bounds) → [1, H, d]
DecodeAttention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def decode_attention_cuda(q, k, v, used, bounds) -> torch.Tensor:
    """FlashAttention-2's variable-length kernel over the cache, reading the length from
    ``used`` (its ``seqused_k``): K/V heads not repeated, no mask, static shapes."""
    q3, k3, v3 = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [1, H, d], [C, Hkv, d]
    assert q3.dtype in (torch.float16, torch.bfloat16) and q3.stride(-1) == k3.stride(-1) == v3.stride(-1) == 1, \
        "flash decoding needs bf16/fp16 inputs with a contiguous last dim"
    return torch.ops.aten._flash_attention_forward(q3, k3, v3, bounds[0], bounds[1], 1, k.shape[1], 0.0, False,
                                                   False, seqused_k=used)[0]


def decode_attention_masked(q, k, v, used, bounds) -> torch.Tensor:
    """SDPA over the cache with the slots at and past ``used`` masked out (CPU, fp32 on CUDA)."""
    visible = (torch.arange(k.shape[1], device=k.device) < used).unsqueeze(0)  # [1, C]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=visible, enable_gqa=True).transpose(0, 1)


def select_decode_attention(device: torch.device, dtype: torch.dtype) -> DecodeAttention:
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return decode_attention_cuda
    return decode_attention_masked


@dataclass
class DecodeStep:
    """One token at slot ``position[0]`` (device int64 [1]) of the cache buffers ``k``, ``v``
    ([layers, Hkv, C, d]); the slots before it are kept."""

    k: torch.Tensor
    v: torch.Tensor
    cos: torch.Tensor  # the RoPE table's rows, held here: a captured graph reads these very tensors
    sin: torch.Tensor
    attention: DecodeAttention
    position: torch.Tensor
    bounds: torch.Tensor  # int32 [2, 2]: [[0, 1], [0, cache capacity]]
    _token: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # cos, sin, used of this token

    rows = 1  # the Step protocol: one text row, no VSTs
    is_visual = False

    def project(self, base: nn.Linear, beacon: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        return base(h)

    def begin(self) -> None:
        """What every layer of this token shares — its RoPE rows and the slots in use — computed
        once, from the device position, before the layers run."""
        self._token = (self.cos.index_select(0, self.position), self.sin.index_select(0, self.position),
                       (self.position + 1).to(torch.int32))

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: [1, H, d]; k, v: [1, Hkv, d] (before RoPE). Returns [1, H·d]. RoPE gathers its rows at
        the device position (``begin``), so no host value changes between tokens."""
        assert self._token is not None, "DecodeStep.begin() runs before the layers"
        cos, sin, used = self._token
        ck, cv = self.k[layer], self.v[layer]
        ck.index_copy_(1, self.position, apply_rope(k.transpose(0, 1), cos, sin))
        cv.index_copy_(1, self.position, v.transpose(0, 1))
        out = self.attention(apply_rope(q.transpose(0, 1), cos, sin), ck, cv, used, self.bounds)
        return out.reshape(1, -1)
