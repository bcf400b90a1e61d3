"""Causal attention of a window's queries over ``[memory | window]`` keys, and the seam where a
backend is chosen once per device and dtype.

Every backend computes, for q: [H, n, d]; k_mem, v_mem: [Hkv, m, d] (visible to every query);
k_win, v_win: [Hkv, n, d] (causal: query i sees window keys 0..i), H a multiple of Hkv:
``softmax(q·kᵀ/√d + mask) · v`` over ``cat(memory, window)`` with a bottom-right aligned causal
mask, returned as [n, H, d].
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

AttentionBackend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def select_backend(device: torch.device, dtype: torch.dtype) -> AttentionBackend:
    """The attention implementation for ``device`` and ``dtype`` (chosen once, by the runner).

    CPU: the split algorithm over PyTorch's CPU flash kernel. CUDA in bf16/fp16: the split
    algorithm over the fused flash-attention kernel (4-D contiguous inputs, no mask tensor), so
    no score matrix is ever materialised. CUDA in fp32 (the goldens' dtype): one masked SDPA call.
    """
    if device.type == "cpu":
        return split_attention_cpu
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return split_attention_cuda
    return masked_attention


def window_attention(q, k_mem, v_mem, k_win, v_win) -> torch.Tensor:
    """The backend for q's device and dtype (a convenience for tests and one-off calls)."""
    return select_backend(q.device, q.dtype)(q, k_mem, v_mem, k_win, v_win)


def _flash_cpu(q, k, v, causal):
    # NOTE: the public SDPA does not return the log-sum-exp needed to merge segments; this aten op
    # is its CPU flash kernel (q, k, v: [B, heads, len, d]) → (out, lse [B, heads, len]).
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal)
    return out, lse


def _flash_cuda(q, k, v, causal):
    # The fused FlashAttention-2 kernel behind SDPA, called directly for its log-sum-exp.
    assert q.dim() == k.dim() == v.dim() == 4 and q.dtype in (torch.float16, torch.bfloat16), \
        "flash attention needs 4-D bf16/fp16 inputs"
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous(), "flash attention needs contiguous inputs"
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal)[:2]
    return out, lse


def split_attention(flash, q, k_mem, v_mem, k_win, v_win) -> torch.Tensor:
    """The two key segments run separately and are merged by their log-sum-exp, so neither the
    concatenated keys nor a mask are materialised. ``flash(q, k, v, causal)`` takes 4-D
    [B, heads, len, d] tensors with as many K/V heads as query heads and returns (out, lse)."""
    h, n, d = q.shape
    hkv, m = k_mem.shape[:2]
    g = h // hkv
    qg = q.reshape(hkv, g, n, d)
    # The window is causal: each query head against its KV head's window keys (a small copy).
    out, lse = flash(qg.transpose(0, 1).contiguous(), k_win.expand(g, -1, -1, -1).contiguous(),
                     v_win.expand(g, -1, -1, -1).contiguous(), True)
    out, lse = out.transpose(0, 1), lse.transpose(0, 1)  # [Hkv, g, n, d], [Hkv, g, n]
    if m:
        # Every query sees all of the memory: fold a KV head's g query heads into one sequence,
        # so the memory's K/V are read once per KV head and never repeated.
        out_m, lse_m = flash(qg.reshape(1, hkv, g * n, d).contiguous(), k_mem.unsqueeze(0).contiguous(),
                             v_mem.unsqueeze(0).contiguous(), False)
        out_m, lse_m = out_m.view(hkv, g, n, d), lse_m.view(hkv, g, n)
        total = torch.logaddexp(lse, lse_m)
        out = (out.float() * torch.exp(lse - total).unsqueeze(-1)
               + out_m.float() * torch.exp(lse_m - total).unsqueeze(-1)).to(q.dtype)
    return out.reshape(h, n, d).transpose(0, 1)


def split_attention_cpu(q, k_mem, v_mem, k_win, v_win) -> torch.Tensor:
    return split_attention(_flash_cpu, q, k_mem, v_mem, k_win, v_win)


def split_attention_cuda(q, k_mem, v_mem, k_win, v_win) -> torch.Tensor:
    return split_attention(_flash_cuda, q, k_mem, v_mem, k_win, v_win)


def masked_attention(q, k_mem, v_mem, k_win, v_win) -> torch.Tensor:
    """One SDPA call over the concatenated keys with a boolean mask (the reference on GPUs)."""
    n, m = q.shape[1], k_mem.shape[1]
    k = torch.cat([k_mem, k_win], dim=1)
    v = torch.cat([v_mem, v_win], dim=1)
    mask = torch.ones(n, m + n, dtype=torch.bool, device=q.device).tril(m)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    return out.transpose(0, 1)
