"""A tiny random checkpoint in the upstream ``sy1998/Video_XL`` layout and a short sample video.

Everything is generated offline and deterministically, so the engine can be tried end to end on
a fresh machine. The weights are random: answers are nonsense words.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..limits import DEFAULT_FRAMES
from ..loader import SPECIAL_TOKENS, tiny_bpe
from ..runtime import cache_dir

SAMPLE_FRAMES = 160  # more than DEFAULT_FRAMES: the demo's default request samples without a warning

_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
TINY = dict(hidden=128, layers=3, heads=4, kv_heads=2, mlp=256, vision_hidden=64, vision_layers=3,
            vision_heads=4, vision_mlp=256, bpe_vocab=1000)


def default_dir() -> Path:
    return cache_dir() / "demo"


def ensure_demo(folder: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Create (once) the demo checkpoint and video under ``folder``; return their paths (a sample
    video shorter than ``DEFAULT_FRAMES``, from an older version, is written again)."""
    from ..video.reader import probe

    folder = Path(folder) if folder else default_dir()
    video = folder / "sample.mp4"
    if not video.is_file() or probe(video).frames < DEFAULT_FRAMES:
        write_sample_video(video)
    return ensure_demo_checkpoint(folder), video


def ensure_demo_checkpoint(folder: str | os.PathLike | None = None) -> Path:
    """Create (once) the demo checkpoint under ``folder``; return its path."""
    ckpt = (Path(folder) if folder else default_dir()) / "tiny-videoxl"
    if not (ckpt / "model.safetensors.index.json").is_file():
        write_tiny_checkpoint(ckpt)
    return ckpt


def write_tiny_checkpoint(folder: str | os.PathLike, seed: int = 0, **sizes) -> Path:
    """Write a random Video-XL checkpoint with the released file layout and config keys."""
    s = {**TINY, **sizes}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_text = _write_tokenizer(folder, s["bpe_vocab"])
    vocab = 64 * math.ceil((n_text + len(SPECIAL_TOKENS)) / 64)
    eot, im_end = (n_text + SPECIAL_TOKENS.index(t) for t in ("<|endoftext|>", "<|im_end|>"))
    tower = "clip-vit-tiny-patch14-336"
    config = {
        "architectures": ["LlavaQwenForCausalLM"], "model_type": "qwen2",
        "hidden_size": s["hidden"], "intermediate_size": s["mlp"], "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"],
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None,
        "max_position_embeddings": 32768, "vocab_size": vocab, "tie_word_embeddings": False,
        "bos_token_id": eot, "eos_token_id": im_end, "use_sliding_window": False,
        "torch_dtype": "bfloat16", "use_cache": True,
        "mm_vision_tower": tower, "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": s["vision_hidden"],
        "mm_resampler_type": "spatial_pool", "mm_spatial_pool_stride": 2,
        "mm_spatial_pool_mode": "average", "mm_spatial_pool_out_channels": s["vision_hidden"],
        "mm_patch_merge_type": "unires", "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "image_aspect_ratio": "anyres",
        "image_grid_pinpoints": [[336 * w, 336 * h] for w in range(1, 5) for h in range(1, 5) if w * h > 1],
        "enable_beacon": True, "beacon_window": 1440, "beacon_stride": 1440,
        "beacon_attn": "full-coverage", "beacon_pos": "interleave", "beacon_param": ["q", "k", "v"],
        "beacon_ratio": [2, 4, 8], "beacon_ratio_mix": "step-random", "beacon_sink_size": 0,
        "beacon_attend_prev": True, "beacon_accum": True, "beacon_parallel_window": 1,
        "beacon_embed_init": "eos",
    }
    _write_json(folder / "config.json", config)
    _write_json(folder / "generation_config.json",
                {"bos_token_id": eot, "eos_token_id": [im_end, eot], "pad_token_id": eot})
    vision_cfg = {
        "hidden_size": s["vision_hidden"], "intermediate_size": s["vision_mlp"],
        "num_hidden_layers": s["vision_layers"], "num_attention_heads": s["vision_heads"],
        "image_size": 336, "patch_size": 14, "num_channels": 3, "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5, "model_type": "clip_vision_model",
    }
    (folder / tower).mkdir(exist_ok=True)
    _write_json(folder / tower / "config.json",
                {"architectures": ["CLIPModel"], "model_type": "clip", "vision_config": vision_cfg})
    _write_json(folder / tower / "preprocessor_config.json", {
        "crop_size": 336, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 336})
    weights, vision = _random_weights(s, vocab, n_text, seed)
    save_file(vision, str(folder / tower / "model.safetensors"))
    names = sorted(weights)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: weights[k] for k in shard}, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
    _write_json(folder / "model.safetensors.index.json", {
        "metadata": {"total_size": sum(t.nbytes for t in weights.values())}, "weight_map": weight_map})
    return folder


def _random_weights(s, vocab, n_text, seed):
    g = torch.Generator().manual_seed(seed)

    def lin(out, inp, gain=1.0, bias=True, prefix=""):
        w = {prefix + "weight": torch.randn(out, inp, generator=g) * gain / math.sqrt(inp)}
        if bias:
            w[prefix + "bias"] = torch.randn(out, generator=g) * 0.1
        return w

    def norm(dim, prefix, bias=False):
        w = {prefix + "weight": 1 + 0.1 * torch.randn(dim, generator=g)}
        if bias:
            w[prefix + "bias"] = 0.1 * torch.randn(dim, generator=g)
        return w

    D, Hd = s["hidden"], s["hidden"] // s["heads"]
    kv = s["kv_heads"] * Hd
    emb = torch.randn(vocab, D, generator=g) * 0.5
    head = torch.randn(vocab, D, generator=g) / math.sqrt(D)
    emb[n_text + len(SPECIAL_TOKENS):] = 0  # padded rows: never produced, never picked
    head[n_text + len(SPECIAL_TOKENS):] = 0
    w = {"model.embed_tokens.weight": emb, "lm_head.weight": head,
         "model.beacon_embed_tokens.weight": torch.randn(1, D, generator=g) * 0.5,
         **norm(D, "model.norm.")}
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        w.update(norm(D, p + "input_layernorm.") | norm(D, p + "post_attention_layernorm."))
        for kind in ("", "beacon_"):
            w.update(lin(D, D, 2.0, prefix=f"{p}self_attn.{kind}q_proj.")
                     | lin(kv, D, 2.0, prefix=f"{p}self_attn.{kind}k_proj.")
                     | lin(kv, D, prefix=f"{p}self_attn.{kind}v_proj."))
        w.update(lin(D, D, 1.5, bias=False, prefix=p + "self_attn.o_proj.")
                 | lin(s["mlp"], D, bias=False, prefix=p + "mlp.gate_proj.")
                 | lin(s["mlp"], D, 1.5, bias=False, prefix=p + "mlp.up_proj.")
                 | lin(D, s["mlp"], 1.5, bias=False, prefix=p + "mlp.down_proj."))
    C = s["vision_hidden"]
    w.update(lin(D, C, prefix="model.mm_projector.0.") | lin(D, D, prefix="model.mm_projector.2."))
    v = {"embeddings.class_embedding": torch.randn(C, generator=g),
         "embeddings.patch_embedding.weight": torch.randn(C, 3, 14, 14, generator=g) / math.sqrt(3 * 196),
         "embeddings.position_embedding.weight": torch.randn(577, C, generator=g) * 0.5,
         **norm(C, "pre_layrnorm.", bias=True), **norm(C, "post_layernorm.", bias=True)}
    for i in range(s["vision_layers"]):
        p = f"encoder.layers.{i}."
        for name in ("q_proj", "k_proj"):
            v.update(lin(C, C, 2.0, prefix=f"{p}self_attn.{name}."))
        v.update(lin(C, C, prefix=p + "self_attn.v_proj.") | lin(C, C, prefix=p + "self_attn.out_proj.")
                 | norm(C, p + "layer_norm1.", bias=True) | norm(C, p + "layer_norm2.", bias=True)
                 | lin(s["vision_mlp"], C, prefix=p + "mlp.fc1.") | lin(C, s["vision_mlp"], prefix=p + "mlp.fc2."))
    bf16 = lambda d: {k: t.to(torch.bfloat16).contiguous() for k, t in d.items()}  # noqa: E731
    w.update({"model.vision_tower.vision_tower.vision_model." + k: t for k, t in v.items()})
    return bf16(w), bf16({"vision_model." + k: t for k, t in v.items()})


def _write_tokenizer(folder: Path, vocab_size: int) -> int:
    """Write :func:`vxl_fast.loader.tiny_bpe` as a Qwen2 tokenizer's files; return the number of
    non-special tokens."""
    tok = tiny_bpe(vocab_size)
    n_text = tok.get_vocab_size() - len(SPECIAL_TOKENS)
    tok.save(str(folder / "tokenizer.json"))
    tok.model.save(str(folder))  # vocab.json + merges.txt
    ids = {t: n_text + i for i, t in enumerate(SPECIAL_TOKENS)}
    _write_json(folder / "added_tokens.json", ids)
    special = {"content": None, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    _write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "errors": "replace",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "added_tokens_decoder": {str(i): {**special, "content": t, "special": True} for t, i in ids.items()},
        "chat_template": _CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "model_max_length": 32768, "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer"})
    _write_json(folder / "special_tokens_map.json", {
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    return n_text


def write_sample_video(path: str | os.PathLike, frames: int = SAMPLE_FRAMES, fps: int = 8,
                       size: tuple[int, int] = (320, 240)) -> Path:
    """A short H.264 clip: a square crossing the frame over a slowly changing background."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            phase = t / frames
            img = np.empty((h, w, 3), dtype=np.uint8)
            img[..., 0] = (xx * 255 // w + int(255 * phase)) % 256
            img[..., 1] = yy * 255 // h
            img[..., 2] = int(128 + 100 * math.sin(2 * math.pi * phase))
            x0 = int((w - 60) * phase)
            img[h // 2 - 30:h // 2 + 30, x0:x0 + 60] = (255, 255, 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")
