"""Causal attention of a window's queries over ``[memory | window]`` keys (the reference path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_attention(q: torch.Tensor, k_mem: torch.Tensor, v_mem: torch.Tensor,
                     k_win: torch.Tensor, v_win: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√d + mask) · v over two key segments.

    q: [H, n, d]; k_mem, v_mem: [Hkv, m, d], visible to every query; k_win, v_win: [Hkv, n, d],
    causal (query i sees window keys 0..i). H is a multiple of Hkv (grouped-query attention).
    Returns [n, H, d]. This is one softmax over ``cat(memory, window)`` with a bottom-right
    aligned causal mask; on the CPU the two segments run separately and are merged by their
    log-sum-exp, so neither the keys nor a mask are materialised.
    """
    if q.device.type == "cpu":
        return _split_attention_cpu(q, k_mem, v_mem, k_win, v_win)
    return _masked_attention(q, k_mem, v_mem, k_win, v_win)


def _split_attention_cpu(q, k_mem, v_mem, k_win, v_win) -> torch.Tensor:
    h, n, d = q.shape
    hkv, m = k_mem.shape[:2]
    g = h // hkv
    # NOTE: the public SDPA does not return the log-sum-exp needed to merge segments; this aten
    # op is its CPU flash kernel (q, k, v: [B, heads, len, d]) → (out, lse [B, heads, len]).
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    qg = q.view(hkv, g, n, d)
    out, lse = flash(qg.transpose(0, 1), k_win.expand(g, -1, -1, -1), v_win.expand(g, -1, -1, -1),
                     0.0, True)
    out, lse = out.transpose(0, 1), lse.transpose(0, 1)  # [Hkv, g, n, d], [Hkv, g, n]
    if m:
        # Every query sees all of the memory: fold a KV head's g query heads into one sequence.
        out_m, lse_m = flash(qg.reshape(1, hkv, g * n, d), k_mem.unsqueeze(0), v_mem.unsqueeze(0),
                             0.0, False)
        out_m, lse_m = out_m.view(hkv, g, n, d), lse_m.view(hkv, g, n)
        total = torch.logaddexp(lse, lse_m)
        out = (out.float() * torch.exp(lse - total).unsqueeze(-1)
               + out_m.float() * torch.exp(lse_m - total).unsqueeze(-1)).to(q.dtype)
    return out.reshape(h, n, d).transpose(0, 1)


def _masked_attention(q, k_mem, v_mem, k_win, v_win) -> torch.Tensor:
    n, m = q.shape[1], k_mem.shape[1]
    k = torch.cat([k_mem, k_win], dim=1)
    v = torch.cat([v_mem, v_win], dim=1)
    mask = torch.ones(n, m + n, dtype=torch.bool, device=q.device).tril(m)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    return out.transpose(0, 1)
