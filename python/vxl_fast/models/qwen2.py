"""Qwen2 decoder with Video-XL's VST-specific q/k/v projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..config import LLMConfig
from ..layers.norm import RMSNorm
from ..layers.step import Step, VisualStep


class Qwen2Attention(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        d = cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, d
        width = (cfg.num_heads + 2 * cfg.num_kv_heads) * d
        self.qkv_proj = nn.Linear(cfg.hidden_size, width)  # fused q_proj, k_proj, v_proj
        self.beacon_qkv_proj = nn.Linear(cfg.hidden_size, width)  # VST rows' own projections
        self.o_proj = nn.Linear(cfg.num_heads * d, cfg.hidden_size, bias=False)

    def project(self, h: torch.Tensor, step: Step):
        """h: [n, D] → q [n, H, d], k and v [n, Hkv, d]; a visual window's VST rows use ``beacon_qkv_proj``."""
        return self._split(step.project(self.qkv_proj, self.beacon_qkv_proj, h))

    def project_vst_kv(self, h_vst: torch.Tensor):
        """The VST rows' k and v [nb, Hkv, d] only (their queries are not needed)."""
        hd = self.num_heads * self.head_dim
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(ops.silu_and_mul(self.gate_up_proj(x)))


class Qwen2DecoderLayer(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Qwen2Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = Qwen2MLP(cfg)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, layer: int,
                step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden state entering the layer is residual + x (x alone for the first layer,
        residual None); returns (the MLP's output, the hidden state after attention), whose sum
        leaves the layer. Each residual add happens in the next norm (``RMSNorm.add``)."""
        h, residual = self.input_layernorm.add(x, residual)
        q, k, v = self.self_attn.project(h, step)
        h, residual = self.post_attention_layernorm.add(self.self_attn.o_proj(step.attend(layer, q, k, v)), residual)
        return self.mlp(h), residual

    def keep_vst_kv(self, x: torch.Tensor, residual: torch.Tensor | None, layer: int, step: VisualStep) -> None:
        """The last layer of a visual window: only its VSTs' K/V are kept and nothing reads its
        output, so the raw rows' K/V, the attention, ``o_proj`` and the MLP are not computed."""
        rows = step.vst_index
        h, _ = self.input_layernorm.add(x[rows], None if residual is None else residual[rows])
        k, v = self.self_attn.project_vst_kv(h)
        step.keep(layer, k, v)


class Qwen2Model(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.beacon_embed_tokens = nn.Embedding(1, cfg.hidden_size)  # the VST input embedding
        self.layers = nn.ModuleList(Qwen2DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, step: Step) -> torch.Tensor | None:
        """Run one window's rows x [n, D] through every layer; returns the last hidden states
        (None for a visual window, whose only result is the VSTs' K/V in the cache)."""
        last = len(self.layers) - 1
        residual = None
        for i, layer in enumerate(self.layers):
            if i == last and step.is_visual:
                layer.keep_vst_kv(x, residual, i, step)
                return None
            x, residual = layer(x, residual, i, step)
        return residual + x
