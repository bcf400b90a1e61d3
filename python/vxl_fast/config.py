"""Checkpoint configuration: frozen dataclasses read from a Video-XL checkpoint folder.

Every value the engine depends on is read from the files (``config.json``, the vision-tower
folder named by ``mm_vision_tower``, ``generation_config.json``); unsupported values are
rejected here, once, with a message naming the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CheckpointError

# Ratios the engine accepts. The first five divide the 144 tokens of a frame, so no window leaves a
# remainder; 32 and 64 are upstream-faithful "extended" ratios whose leftover raw tokens of a
# window are summarised by no VST (upstream's single-ratio behaviour).
SUPPORTED_RATIOS = (2, 4, 8, 12, 16)
EXTENDED_RATIOS = (32, 64)

# The released VideoXL_weight_8/config.json values the engine reads.
_RELEASED = dict(
    architectures=["LlavaQwenForCausalLM"], model_type="qwen2", hidden_size=3584,
    intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
    hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
    vocab_size=152064, eos_token_id=151645, mm_vision_tower="openai/clip-vit-large-patch14-336",
    mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_projector_type="mlp2x_gelu",
    mm_hidden_size=1024, mm_spatial_pool_stride=2, mm_spatial_pool_mode="average",
    mm_patch_merge_type="unires",
    image_grid_pinpoints=[[336 * w, 336 * h] for w in range(1, 7) for h in range(1, 7) if w * h > 1],
    beacon_window=1440, beacon_stride=1440, beacon_attn="full-coverage", beacon_pos="interleave",
    beacon_param=["q", "k", "v"], beacon_ratio=[2, 4, 8], beacon_ratio_mix="step-random",
)

# Built-in CLIP ViT-L/14-336 values, used only when the checkpoint has no vision-tower folder.
_CLIP_L14_336 = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=336, patch_size=14, num_channels=3, layer_norm_eps=1e-5, hidden_act="quick_gelu",
)
_CLIP_PREPROCESS = dict(
    size=336, crop_size=336, resample=3,
    image_mean=(0.48145466, 0.4578275, 0.40821073), image_std=(0.26862954, 0.26130258, 0.27577711),
)


@dataclass(frozen=True)
class LLMConfig:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def __post_init__(self):
        _positive("config.json", self, ("hidden_size", "intermediate_size", "num_layers", "num_heads",
                                        "num_kv_heads", "vocab_size", "max_position_embeddings"))
        if self.hidden_size % self.num_heads:
            raise CheckpointError(
                f"config.json: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise CheckpointError(
                f"config.json: num_attention_heads {self.num_heads} is not a multiple of "
                f"num_key_value_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise CheckpointError(f"config.json: head dim {self.head_dim} must be even for RoPE")


@dataclass(frozen=True)
class VisionConfig:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    image_size: int
    patch_size: int
    num_channels: int
    layer_norm_eps: float
    select_layer: int
    select_feature: str
    # CLIP image-processor settings
    size: int
    crop_size: int
    resample: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    source: str  # where the tower config came from (a folder or "built-in CLIP ViT-L/14-336")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def layers_to_run(self) -> int:
        """Encoder blocks needed for ``hidden_states[select_layer]`` (index 0 = embeddings)."""
        return self.select_layer % (self.num_layers + 1)

    def __post_init__(self):
        _positive(f"vision config ({self.source})", self, ("hidden_size", "intermediate_size", "num_layers",
                                                           "num_heads", "image_size", "patch_size", "size",
                                                           "crop_size"))
        if self.hidden_size % self.num_heads:
            raise CheckpointError(
                f"vision config ({self.source}): hidden_size {self.hidden_size} is not divisible "
                f"by num_attention_heads {self.num_heads}")
        if not -(self.num_layers + 1) <= self.select_layer <= self.num_layers:
            raise CheckpointError(
                f"config.json: mm_vision_select_layer {self.select_layer} is out of range for a "
                f"{self.num_layers}-layer vision tower")
        if self.select_feature != "patch":
            raise CheckpointError(
                f"config.json: mm_vision_select_feature {self.select_feature!r} is not supported "
                "(only 'patch')")
        if self.image_size % self.patch_size:
            raise CheckpointError(
                f"vision config: image_size {self.image_size} is not a multiple of patch_size "
                f"{self.patch_size}")
        if self.size < self.crop_size:
            raise CheckpointError(
                f"preprocessor_config.json: resize size {self.size} is smaller than crop_size "
                f"{self.crop_size}")
        if self.crop_size != self.image_size:
            raise CheckpointError(
                f"preprocessor_config.json: crop_size {self.crop_size} differs from the tower's "
                f"image_size {self.image_size}")


@dataclass(frozen=True)
class BeaconConfig:
    window: int
    stride: int
    ratios: tuple[int, ...]
    ratio_mix: str
    param: tuple[str, ...]

    def __post_init__(self):
        if self.window != self.stride:
            raise CheckpointError(
                f"config.json: beacon_window {self.window} != beacon_stride {self.stride}; "
                "interleaved VSTs need equal values")
        if self.window < 1:
            raise CheckpointError(f"config.json: beacon_window must be positive, got {self.window}")
        if len(self.ratios) > 1 and self.ratio_mix != "step-random":
            raise CheckpointError(
                f"config.json: beacon_ratio_mix {self.ratio_mix!r} is not supported with several ratios "
                "(only 'step-random': one ratio drawn per window)")
        if set(self.param) != {"q", "k", "v"}:
            raise CheckpointError(
                f"config.json: beacon_param {list(self.param)} is not supported (only q, k, v)")


@dataclass(frozen=True)
class VideoXLConfig:
    llm: LLMConfig
    vision: VisionConfig
    beacon: BeaconConfig
    mm_hidden_size: int
    pool_stride: int
    image_grid_pinpoints: tuple[tuple[int, int], ...]
    eos_token_ids: tuple[int, ...]
    generation: dict  # sampling defaults from generation_config.json (HF merges these)
    tokens_per_frame: int = field(init=False)

    def __post_init__(self):
        if self.vision.grid % self.pool_stride:
            raise CheckpointError(
                f"config.json: mm_spatial_pool_stride {self.pool_stride} does not divide the "
                f"{self.vision.grid}x{self.vision.grid} patch grid")
        if self.mm_hidden_size != self.vision.hidden_size:
            raise CheckpointError(
                f"config.json: mm_hidden_size {self.mm_hidden_size} differs from the vision "
                f"tower's hidden_size {self.vision.hidden_size}")
        object.__setattr__(self, "tokens_per_frame", (self.vision.grid // self.pool_stride) ** 2)

    @classmethod
    def from_dir(cls, path: str | Path) -> "VideoXLConfig":
        """Read ``config.json``, ``generation_config.json`` and the vision-tower folder."""
        path = Path(path)
        raw = _read_json(path / "config.json")
        gen_file = path / "generation_config.json"
        return cls.from_dict(raw, _read_json(gen_file) if gen_file.exists() else {}, path)

    @classmethod
    def released(cls) -> "VideoXLConfig":
        """The released Video-XL configuration: Qwen2-7B + CLIP ViT-L/14-336."""
        return cls.from_dict(dict(_RELEASED), {"eos_token_id": [151645, 151643]}, None)

    @classmethod
    def from_dict(cls, raw: dict, gen: dict, path: Path | None) -> "VideoXLConfig":
        """``path`` is the checkpoint folder the vision tower is looked up in (None: built-in)."""
        _check_architecture(raw, path)
        llm = LLMConfig(
            hidden_size=_req(raw, "hidden_size", int),
            intermediate_size=_req(raw, "intermediate_size", int),
            num_layers=_req(raw, "num_hidden_layers", int),
            num_heads=_req(raw, "num_attention_heads", int),
            num_kv_heads=_val(raw, "num_key_value_heads", int, raw.get("num_attention_heads")),
            vocab_size=_req(raw, "vocab_size", int),
            rms_norm_eps=_val(raw, "rms_norm_eps", float, 1e-6),
            rope_theta=float(raw.get("rope_theta")
                             or (raw.get("rope_parameters") or {}).get("rope_theta", 10000.0)),
            max_position_embeddings=_val(raw, "max_position_embeddings", int, 32768),
        )
        for key, ok in (("hidden_act", "silu"), ("mm_projector_type", "mlp2x_gelu"),
                        ("mm_patch_merge_type", "unires"), ("beacon_pos", "interleave"),
                        ("beacon_attn", "full-coverage"), ("mm_spatial_pool_mode", "average")):
            if raw.get(key, ok) != ok:
                raise CheckpointError(
                    f"config.json: {key} = {raw[key]!r} is not supported (expected {ok!r})")
        if raw.get("use_sliding_window"):
            raise CheckpointError("config.json: use_sliding_window = true is not supported")
        if raw.get("enable_beacon") is False:
            raise CheckpointError("config.json: enable_beacon = false is not a Video-XL checkpoint")
        if raw.get("beacon_accum") is False:
            raise CheckpointError("config.json: beacon_accum = false is not supported")
        if raw.get("beacon_sink_size", 0) != 0:
            raise CheckpointError("config.json: beacon_sink_size must be 0")
        ratios = raw.get("beacon_ratio", [8])
        ratios = tuple(int(r) for r in (ratios if isinstance(ratios, list) else [ratios]))
        beacon = BeaconConfig(
            window=_val(raw, "beacon_window", int, 1440),
            stride=_val(raw, "beacon_stride", int, 1440),
            ratios=ratios,
            ratio_mix=str(raw.get("beacon_ratio_mix", "step-random")),
            param=tuple(raw.get("beacon_param", ["q", "k", "v"])),
        )
        vision = _vision_config(path, raw)
        eos = gen.get("eos_token_id", raw.get("eos_token_id"))
        if eos is None:
            raise CheckpointError(f"{path}: no eos_token_id in generation_config.json or config.json")
        eos = tuple(eos) if isinstance(eos, list) else (int(eos),)
        pinpoints = tuple(tuple(int(v) for v in p) for p in raw.get("image_grid_pinpoints") or ())
        return cls(
            llm=llm, vision=vision, beacon=beacon,
            mm_hidden_size=_val(raw, "mm_hidden_size", int, vision.hidden_size),
            pool_stride=_val(raw, "mm_spatial_pool_stride", int, 2),
            image_grid_pinpoints=pinpoints,
            eos_token_ids=eos,
            generation={k: gen[k] for k in ("temperature", "top_k", "top_p", "repetition_penalty")
                        if gen.get(k) is not None},
        )


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def _positive(where: str, cfg, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise CheckpointError(f"{where}: {name} must be positive, got {getattr(cfg, name)}")


def _req(raw: dict, key: str, typ):
    if key not in raw or raw[key] is None:
        raise CheckpointError(f"config.json is missing the required key {key!r}")
    return _val(raw, key, typ, None)


def _val(raw: dict, key: str, typ, default, source: str = "config.json"):
    """``raw[key]`` (or ``default``) as ``typ``; a value of another kind is named with its key."""
    value = raw.get(key, default)
    if value is None:
        value = default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        ok = ok and float(value).is_integer()
    if not ok:
        raise CheckpointError(f"{source}: {key} = {value!r} is not {'an integer' if typ is int else 'a number'}")
    return typ(value)


def _check_architecture(raw: dict, path: Path | None) -> None:
    archs = raw.get("architectures") or []
    if "LlavaQwenForCausalLM" not in archs:
        raise CheckpointError(
            f"{path}/config.json: architectures {archs} is not a Video-XL checkpoint "
            "(expected 'LlavaQwenForCausalLM')")
    if raw.get("model_type") not in ("qwen2", "llava_qwen"):
        raise CheckpointError(
            f"{path}/config.json: model_type {raw.get('model_type')!r} is not supported "
            "(expected 'qwen2' or 'llava_qwen')")


def _vision_config(path: Path | None, raw: dict) -> VisionConfig:
    tower = raw.get("mm_vision_tower") or raw.get("vision_tower")
    if not tower:
        raise CheckpointError("config.json is missing the required key 'mm_vision_tower'")
    folder = path / tower if path is not None else None
    if folder is not None and folder.is_dir() and (folder / "config.json").is_file():
        cfg = _read_json(folder / "config.json")
        vc = cfg.get("vision_config", cfg)
        pp = _read_json(folder / "preprocessor_config.json") if (folder / "preprocessor_config.json").is_file() else {}
        source = str(folder)
    else:
        vc, pp, source = _CLIP_L14_336, {}, "built-in CLIP ViT-L/14-336"
    pp = {**_CLIP_PREPROCESS, **pp}
    size = pp["size"]
    size = size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else size
    crop = pp["crop_size"]
    crop = crop.get("height") if isinstance(crop, dict) else crop
    if vc.get("hidden_act", "quick_gelu") != "quick_gelu":
        raise CheckpointError(f"{source}: vision hidden_act {vc['hidden_act']!r} is not supported")
    return VisionConfig(
        hidden_size=_val(vc, "hidden_size", int, 1024, source),
        intermediate_size=_val(vc, "intermediate_size", int, 4096, source),
        num_layers=_val(vc, "num_hidden_layers", int, 24, source),
        num_heads=_val(vc, "num_attention_heads", int, 16, source),
        image_size=_val(vc, "image_size", int, 336, source),
        patch_size=_val(vc, "patch_size", int, 14, source),
        num_channels=_val(vc, "num_channels", int, 3, source),
        layer_norm_eps=_val(vc, "layer_norm_eps", float, 1e-5, source),
        select_layer=_val(raw, "mm_vision_select_layer", int, -2),
        select_feature=str(raw.get("mm_vision_select_feature", "patch")),
        size=int(size), crop_size=int(crop), resample=int(pp.get("resample", 3)),
        image_mean=tuple(float(v) for v in pp["image_mean"]),
        image_std=tuple(float(v) for v in pp["image_std"]),
        source=source,
    )
