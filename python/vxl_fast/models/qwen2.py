"""Qwen2 decoder with Video-XL's VST-specific q/k/v projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LLMConfig
from ..layers.kernels import TORCH, LayerKernels
from ..layers.norm import rms_norm
from ..layers.step import WindowStep


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def add(self, x: torch.Tensor, residual: torch.Tensor | None,
            kernels: LayerKernels) -> tuple[torch.Tensor, torch.Tensor]:
        """(RMSNorm(h), h) with h = residual + x, the residual add fused into the norm; h = x when
        there is no residual yet (the first layer's input)."""
        if residual is None:
            return self(x), x
        return kernels.add_rms_norm(x, residual, self.weight, self.eps)


VST_PROJECTIONS = ("gather", "overwrite")


def project_window(base: nn.Linear, beacon: nn.Linear, h: torch.Tensor, step: WindowStep) -> torch.Tensor:
    """A visual window's fused q/k/v [n, width]: raw rows through ``base``, VST rows through
    ``beacon``. ``step.vst_projection`` says how: "gather" runs each projection on its own rows
    (two GEMMs over gathered rows), "overwrite" runs ``base`` over every row and writes the VST
    rows' own results over it (one more GEMM row per VST, no gather of the raw rows)."""
    if step.vst_projection == "overwrite":
        qkv = base(h)
    else:
        qkv = h.new_empty(h.shape[0], base.out_features)
        qkv[step.raw_index] = base(h[step.raw_index])
    qkv[step.vst_index] = beacon(h[step.vst_index])
    return qkv


class Qwen2Attention(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        d = cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, d
        width = (cfg.num_heads + 2 * cfg.num_kv_heads) * d
        self.qkv_proj = nn.Linear(cfg.hidden_size, width)  # fused q_proj, k_proj, v_proj
        self.beacon_qkv_proj = nn.Linear(cfg.hidden_size, width)  # VST rows' own projections
        self.o_proj = nn.Linear(cfg.num_heads * d, cfg.hidden_size, bias=False)

    def project(self, h: torch.Tensor, step: WindowStep):
        """h: [n, D] → q [n, H, d], k and v [n, Hkv, d]; VST rows use ``beacon_qkv_proj``."""
        return self._split(project_window(self.qkv_proj, self.beacon_qkv_proj, h, step) if step.is_visual
                           else self.qkv_proj(h))

    def project_vst_kv(self, h_vst: torch.Tensor):
        """The VST rows' k and v [nb, Hkv, d] only (their queries are not needed)."""
        hd, kvd = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        w, b = self.beacon_qkv_proj.weight[hd:], self.beacon_qkv_proj.bias[hd:]
        _, k, v = self._split(F.linear(h_vst, w, b), with_q=False)
        return k, v

    def _split(self, qkv: torch.Tensor, with_q: bool = True):
        hd, kvd = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        n = qkv.shape[0]
        q, k, v = qkv.split([hd, kvd, kvd], dim=-1) if with_q else (None, *qkv.split([kvd, kvd], dim=-1))
        return (None if q is None else q.view(n, self.num_heads, self.head_dim),
                k.view(n, self.num_kv_heads, self.head_dim),
                v.view(n, self.num_kv_heads, self.head_dim))


class Qwen2MLP(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, kernels: LayerKernels) -> torch.Tensor:
        return self.down_proj(kernels.silu_and_mul(self.gate_up_proj(x)))


class Qwen2DecoderLayer(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Qwen2Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = Qwen2MLP(cfg)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, layer: int, step: WindowStep,
                kernels: LayerKernels) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden state entering the layer is residual + x (x alone for the first layer,
        residual None); returns (the MLP's output, the hidden state after attention), whose sum
        leaves the layer. Each residual add happens in the next norm (``RMSNorm.add``)."""
        h, residual = self.input_layernorm.add(x, residual, kernels)
        q, k, v = self.self_attn.project(h, step)
        h, residual = self.post_attention_layernorm.add(
            self.self_attn.o_proj(step.attend(layer, q, k, v, kernels)), residual, kernels)
        return self.mlp(h, kernels), residual

    def keep_vst_kv(self, x: torch.Tensor, residual: torch.Tensor | None, layer: int, step: WindowStep,
                    kernels: LayerKernels) -> None:
        """The last layer of a visual window: only its VSTs' K/V are kept and nothing reads its
        output, so the raw rows' K/V, the attention, ``o_proj`` and the MLP are not computed."""
        rows = step.vst_index
        h, _ = self.input_layernorm.add(x[rows], None if residual is None else residual[rows], kernels)
        k, v = self.self_attn.project_vst_kv(h)
        step.keep(layer, k, v)


class Qwen2Model(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.beacon_embed_tokens = nn.Embedding(1, cfg.hidden_size)  # the VST input embedding
        self.layers = nn.ModuleList(Qwen2DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        # NOTE: the PyTorch composition until the runner picks the device's (select_kernels).
        self.kernels = TORCH

    def forward(self, x: torch.Tensor, step: WindowStep) -> torch.Tensor | None:
        """Run one window's rows x [n, D] through every layer; returns the last hidden states
        (None for a visual window, whose only result is the VSTs' K/V in the cache)."""
        last = len(self.layers) - 1
        residual = None
        for i, layer in enumerate(self.layers):
            if i == last and step.is_visual:
                layer.keep_vst_kv(x, residual, i, step, self.kernels)
                return None
            x, residual = layer(x, residual, i, step, self.kernels)
        return residual + x
