"""CLIP ViT vision tower, run up to the hidden state the checkpoint selects."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..config import VisionConfig
from ..layers.norm import LayerNorm


class CLIPAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        c = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.qkv_proj = nn.Linear(c, 3 * c)  # fused q_proj, k_proj, v_proj
        self.out_proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv_proj(x).view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale = head_dim^-0.5, no mask
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class CLIPMLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(ops.linear_quick_gelu(x, self.fc1.weight, self.fc1.bias))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer_norm1 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = CLIPAttention(cfg)
        self.layer_norm2 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = CLIPMLP(cfg)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden state entering the layer is residual + x (x alone for the first layer,
        residual None); returns (the MLP's output, the hidden state after attention), whose sum
        leaves the layer. Each residual add happens in the next norm (``LayerNorm.add``)."""
        h, residual = self.layer_norm1.add(x, residual)
        h, residual = self.layer_norm2.add(self.self_attn(h), residual)
        return self.mlp(h), residual


class CLIPEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        c = cfg.hidden_size
        self.class_embedding = nn.Parameter(torch.empty(c))
        self.patch_embedding = nn.Conv2d(cfg.num_channels, c, cfg.patch_size, cfg.patch_size, bias=False)
        self.position_embedding = nn.Embedding(cfg.num_patches + 1, c)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch rows [B, P, 3p²] → the patch embeddings [B, P, C]: the stride-p, p×p convolution as
        one matmul (no cuDNN, so no TF32 in float32 on a GPU). The class token and the position
        embedding are added in ``ops.clip_embed_layer_norm``."""
        return patches @ self.patch_embedding.weight.view(self.patch_embedding.out_channels, -1).t()


class CLIPEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(cfg) for _ in range(cfg.layers_to_run))


class CLIPVisionTower(nn.Module):
    """Patch rows [B, P, 3p²] (``video.preprocess.patch_rows`` of pixels [B, 3, S, S]) → patch features
    [B, P, C] of ``hidden_states[select_layer]``, CLS dropped.

    ``hidden_states[0]`` is the pre-LayerNorm output and ``hidden_states[i]`` the output of block
    ``i``, so only ``select_layer mod (layers + 1)`` blocks run; ``post_layernorm`` is never used.
    """

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.embeddings = CLIPEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.encoder = CLIPEncoder(cfg)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        emb, norm = self.embeddings, self.pre_layrnorm
        x = ops.clip_embed_layer_norm(emb(patches), emb.class_embedding, emb.position_embedding.weight,
                                      norm.weight, norm.bias, norm.eps)
        residual = None
        for layer in self.encoder.layers:
            x, residual = layer(x, residual)
        # the last layer's residual add, on the patch rows only
        return x[:, 1:] if residual is None else residual[:, 1:] + x[:, 1:]
