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
        """Preprocessed frames as patch rows [B, P, 3p²] (``video.preprocess.patch_rows``) → visual
        tokens [B·tokens_per_frame, D]."""
        tokens = self.projector(self.vision(pixels), self.cfg.pool_stride)
        return tokens.reshape(-1, tokens.shape[-1])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Last hidden states [n, D] → fp32 logits [n, vocab]."""
        return self.lm_head(self.llm.norm(hidden)).float()

    @torch.no_grad()
    def init_random(self, device: torch.device, dtype: torch.dtype, seed: int) -> None:
        """Materialise every parameter (built on the meta device) with random values on ``device``.

        Matrices ~ N(0, 1/fan_in) (embeddings N(0, 1)), norm weights 1, biases 0: activations stay
        O(1) through all layers, so timings and memory are those of real weights.
        """
        gen = torch.Generator(device=device).manual_seed(seed)

        def make(name: str, param: torch.Tensor) -> torch.Tensor:
            value = torch.empty(param.shape, device=device, dtype=dtype)
            if name.endswith("bias"):
                return value.zero_()
            if param.dim() == 1 and not name.endswith("class_embedding"):
                return value.fill_(1.0)
            fan_in = 1 if "embed" in name else param[0].numel()
            return value.normal_(0.0, fan_in ** -0.5, generator=gen)
        set_parameters(self, make)

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


def set_parameters(module: nn.Module, make) -> None:
    """Replace every parameter of ``module`` (built on the meta device) by ``make(name, param)``."""
    for name, param in list(module.named_parameters()):
        owner, _, leaf = name.rpartition(".")
        target = module.get_submodule(owner) if owner else module
        setattr(target, leaf, nn.Parameter(make(name, param), requires_grad=False))
