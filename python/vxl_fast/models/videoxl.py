"""Video-XL: vision tower + projector + Qwen2, and where each weight lives in the checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from ..config import VideoXLConfig
from .clip_vision import CLIPVisionTower
from .projector import Projector
from .qwen2 import Qwen2Model

_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
# Our fused parameters and the checkpoint tensors they concatenate.
_PACKED = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "beacon_qkv_proj": ("beacon_q_proj", "beacon_k_proj", "beacon_v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}


class VideoXLModel(nn.Module):
    def __init__(self, cfg: VideoXLConfig):
        super().__init__()
        self.cfg = cfg
        self.vision = CLIPVisionTower(cfg.vision)
        self.projector = Projector(cfg.mm_hidden_size, cfg.llm.hidden_size)
        self.llm = Qwen2Model(cfg.llm)
        self.lm_head = nn.Linear(cfg.llm.hidden_size, cfg.llm.vocab_size, bias=False)

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed frames [B, 3, S, S] → visual tokens [B·tokens_per_frame, D]."""
        tokens = self.projector(self.vision(pixels), self.cfg.pool_stride)
        return tokens.reshape(-1, tokens.shape[-1])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Last hidden states [n, D] → fp32 logits [n, vocab]."""
        return self.lm_head(self.llm.norm(hidden)).float()

    def checkpoint_sources(self, name: str) -> list[tuple[str, tuple[int, ...]]]:
        """Checkpoint tensors (name, shape) that make up our parameter ``name``."""
        shape = tuple(self.get_parameter(name).shape)
        top, _, rest = name.partition(".")
        if top == "vision":
            prefix = _VISION_PREFIX
        elif top == "projector":
            prefix, rest = "model.mm_projector.", rest.replace("linear_1", "0").replace("linear_2", "2")
        elif top == "llm":
            prefix = "model."
        else:
            prefix, rest = "", name
        module, _, leaf = rest.rpartition(".")
        owner, _, packed = module.rpartition(".")
        if packed not in _PACKED:
            return [(prefix + rest, shape)]
        if packed == "gate_up_proj" or top == "vision":
            sizes = [shape[0] // len(_PACKED[packed])] * len(_PACKED[packed])
        else:
            llm = self.cfg.llm
            sizes = [llm.num_heads * llm.head_dim] + [llm.num_kv_heads * llm.head_dim] * 2
        return [(f"{prefix}{owner}.{part}.{leaf}", (rows,) + shape[1:])
                for part, rows in zip(_PACKED[packed], sizes)]
