"""The public engine: load a Video-XL checkpoint, encode visuals, compress them, answer."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import ops
from .config import EXTENDED_RATIOS, SUPPORTED_RATIOS, VideoXLConfig
from .errors import CheckpointError
from .generate import GenerationOutput, Sampler, find_stop
from .layers.rotary import RotaryTable
from .loader import WeightReader, load_module_weights, resolve_checkpoint
from .memory.budget import MemoryBudget, budget
from .memory.kv import KVCache, WindowScratch, check_fits
from .memory.plan import RequestPlan, plan_request
from .memory.window import WindowStep
from .models.videoxl import VideoXLModel
from .prompt import build_prompt, tokenize_prompt
from .video.preprocess import check_frames, clip_preprocess
from .visual import VisualStream, pick_source

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class _Request:
    plan: RequestPlan
    cache: KVCache
    scratch: WindowScratch
    trace: list | None


class VideoXL:
    """A loaded Video-XL model.

    >>> model = VideoXL.from_pretrained("path/to/VideoXL_weight_8")
    >>> out = model.generate(video="clip.mp4", num_frames=128, prompt="What happens?")
    >>> out.text, out.stats["vsts"]
    """

    def __init__(self, config: VideoXLConfig, model: VideoXLModel, tokenizer, path: str,
                 device: torch.device, dtype: torch.dtype):
        self.config, self.model, self.tokenizer = config, model, tokenizer
        self.path, self.device, self.dtype = path, device, dtype
        llm = config.llm
        self.rope = RotaryTable(llm.head_dim, llm.rope_theta, llm.max_position_embeddings, device)
        # NOTE: upstream draws per-window ratios (several configured ratios) from one
        # default_rng(42) created at load and never reset; keeping it per model reproduces that.
        self._rng = np.random.default_rng(42)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> "VideoXL":
        """Load a checkpoint folder laid out like ``sy1998/Video_XL`` (or a hub id when online).

        device: default CUDA when available, else CPU. dtype: default bfloat16 on CUDA, float32
        on CPU (float32 reproduces the reference goldens).
        """
        folder = resolve_checkpoint(path)
        cfg = VideoXLConfig.from_dir(folder)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = _resolve_dtype(dtype, device)
        with torch.device("meta"):
            model = VideoXLModel(cfg)
        reader = WeightReader(folder, device)
        try:
            load_module_weights(model, reader, dtype, model.checkpoint_sources)
        finally:
            reader.close()
        model.eval()
        return cls(cfg, model, _load_tokenizer(folder), str(folder), device, dtype)

    @classmethod
    def random(cls, config: VideoXLConfig | None = None, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None, seed: int = 0, tokenizer=None) -> "VideoXL":
        """A model with random weights built directly on ``device`` (no checkpoint, no CPU init).

        ``config`` defaults to the released Video-XL configuration. The modules and code path are
        those of a loaded checkpoint; for benchmarks and memory planning. The tokenizer defaults
        to the demo checkpoint's (prompt ids stay below its vocabulary of ~1000 tokens).
        """
        cfg = config or VideoXLConfig.released()
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = _resolve_dtype(dtype, device)
        with torch.device("meta"):
            model = VideoXLModel(cfg)
        model.init_random(device, dtype, seed)
        model.eval()
        if tokenizer is None:
            from .demo import ensure_demo_checkpoint
            tokenizer = _load_tokenizer(ensure_demo_checkpoint())
        return cls(cfg, model, tokenizer, "<random>", device, dtype)

    # ------------------------------------------------------------------ vision
    def preprocess(self, frames) -> torch.Tensor:
        """CLIP preprocessing of uint8 frames [T, H, W, 3] → float32 [T, 3, 336, 336]."""
        return clip_preprocess(check_frames(frames), self.config.vision)

    @torch.inference_mode()
    def visual_tokens(self, *, frames=None, video=None, num_frames=None, images=None) -> torch.Tensor:
        """All visual tokens [N, D] the language model would see (144 per frame or image tile)."""
        stream = self._stream(frames, video, num_frames, images)[1]
        return stream.take(stream.num_tokens)

    def _stream(self, frames, video, num_frames, images) -> tuple[str, VisualStream]:
        cfg = self.config
        modality, count, pixels = pick_source(frames, video, num_frames, images,
                                              cfg.image_grid_pinpoints, cfg.vision)
        encode = lambda p: self.model.encode_frames(p.to(self.device, self.dtype))  # noqa: E731
        return modality, VisualStream(count, cfg.tokens_per_frame, pixels, encode)

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    def generate(self, *, frames=None, video=None, num_frames: int | None = None, images=None,
                 prompt: str | None = None, messages: list[dict] | None = None,
                 compression_ratio: int | list[int] | str = 8, max_new_tokens: int = 1024,
                 do_sample: bool = False, temperature: float | None = None,
                 top_p: float | None = None, top_k: int | None = None,
                 repetition_penalty: float | None = None, seed: int | None = None,
                 stop: str | list[str] | None = None, ignore_eos: bool = False,
                 progress: bool = False, trace: bool = False) -> GenerationOutput:
        """Answer a question about a video, frames or one image.

        Visual input (exactly one): ``frames`` uint8 [T, H, W, 3]; ``video`` a file path with
        ``num_frames`` sampled uniformly as upstream does; ``images`` one image (path, PIL image
        or uint8 [H, W, 3]) on upstream's anyres path.
        Text: ``prompt`` (a question) or ``messages`` (a conversation).
        ``compression_ratio``: 2, 4, 8, 12 or 16 (32 and 64 also run, as upstream does);
        a list draws one per window as upstream's ``step-random``; ``"config"`` uses the
        checkpoint's ``beacon_ratio``.
        Sampling settings left as None come from ``generation_config.json`` (HF semantics);
        ``top_k=0`` / ``top_p=1`` disable those filters. ``stop``: strings that end generation;
        ``ignore_eos`` generates exactly ``max_new_tokens`` (benchmarks).
        ``trace`` adds a per-step record of the window loop to ``stats["trace"]``.
        """
        ratios = self._ratios(compression_ratio)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        stops = _stop_strings(stop)
        gen = self.config.generation
        sampler = Sampler(
            self.config.llm.vocab_size, do_sample,
            temperature=gen.get("temperature", 1.0) if temperature is None else temperature,
            top_k=gen.get("top_k", 0) if top_k is None else top_k,
            top_p=gen.get("top_p", 1.0) if top_p is None else top_p,
            repetition_penalty=gen.get("repetition_penalty", 1.0) if repetition_penalty is None
            else repetition_penalty,
            seed=seed, device=self.device)
        text = build_prompt(prompt, messages)
        tok = tokenize_prompt(self.tokenizer, text)
        modality, stream = self._stream(frames, video, num_frames, images)
        self._check_context(len(tok.before) + len(tok.after), max_new_tokens)

        t_start = time.perf_counter()
        plan = plan_request(len(tok.before), stream.num_tokens, len(tok.after), max_new_tokens,
                            self.config.beacon.window, ratios, self._rng)
        req = self._allocate(plan, trace)
        sampler.observe(tok.before + tok.after)
        logits = self._prefill(req, tok, stream, progress)
        t_first = time.perf_counter()
        eos = set() if ignore_eos else set(self.config.eos_token_ids)
        ids, finish, answer = self._decode(req, sampler, logits, max_new_tokens, eos, stops, progress)
        t_end = time.perf_counter()

        vision_s = stream.seconds
        stats = {
            "modality": modality,
            "frames": stream.count if modality == "video" else 0,
            "image_tiles": stream.count if modality == "image" else 0,
            "visual_tokens": plan.visual_tokens,
            "windows": len(plan.windows),
            "vsts": plan.num_vsts,
            "vst_per_window": plan.vst_per_window,
            "compression_ratios": sorted({w.ratio for w in plan.windows}),
            "prompt_tokens": plan.sink + plan.text_after,
            "generated_tokens": len(ids),
            "kv_slots": req.cache.length,
            "kv_capacity": req.cache.capacity,
            "kv_bytes": req.cache.nbytes,
            "kv_bytes_used": req.cache.slot_bytes * req.cache.length,
            "scratch_bytes": req.scratch.nbytes,
            "vision_s": vision_s,
            "prefill_s": t_first - t_start - vision_s,
            "ttft_s": t_first - t_start,
            "decode_s": t_end - t_first,
            "decode_tok_s": (len(ids) - 1) / (t_end - t_first) if len(ids) > 1 else 0.0,
            "total_s": t_end - t_start,
        }
        if trace:
            stats["trace"] = req.trace
        return GenerationOutput(ids, answer, logits, finish, stats)

    def _prefill(self, req: _Request, tok, stream: VisualStream, progress: bool) -> torch.Tensor:
        """Sink, compressed visual windows, then the text after the video; first-token logits."""
        self._run_text(req, tok.before, "prefix_text")
        for w in tqdm(req.plan.windows, desc="compressing", unit="window", disable=not progress,
                      leave=False):
            self._run_visual(req, stream.take(w.n_raw), w)
        hidden = None
        chunk = req.plan.text_chunk
        for a in range(0, len(tok.after), chunk):
            hidden = self._run_text(req, tok.after[a:a + chunk], "text")
        assert hidden is not None, "the prompt always ends with the assistant header"
        logits = self.model.logits(hidden[-1:])[0]
        self._sync()
        return logits

    def _decode(self, req: _Request, sampler: Sampler, logits: torch.Tensor, max_new_tokens: int,
                eos: set[int], stops: tuple[str, ...], progress: bool) -> tuple[list[int], str, str]:
        """Generate until EOS, a stop string or ``max_new_tokens``; the last token is not fed back."""
        ids, finish, cut = [], "length", -1
        with tqdm(total=max_new_tokens, desc="generating", unit="tok", disable=not progress,
                  leave=False) as bar:
            while True:
                token = sampler(logits)
                ids.append(token)
                bar.update(1)
                if token in eos:
                    finish = "eos"
                    break
                if stops:
                    cut = find_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stops)
                    if cut >= 0:
                        finish = "stop"
                        break
                if len(ids) >= max_new_tokens:
                    break
                logits = self.model.logits(self._run_text(req, [token], "decode"))[0]
        self._sync()
        answer = self.tokenizer.decode(ids, skip_special_tokens=True)
        return ids, finish, (answer[:cut] if cut >= 0 else answer).strip()

    # ------------------------------------------------------------------ internals
    def _ratios(self, ratio) -> tuple[int, ...]:
        if isinstance(ratio, str):
            if ratio != "config":
                raise ValueError(f"compression_ratio {ratio!r} is not supported; pass an integer, "
                                 "a list of integers or 'config'")
            ratios = self.config.beacon.ratios
        elif isinstance(ratio, (list, tuple)):
            ratios = tuple(ratio)
        else:
            ratios = (ratio,)
        allowed = SUPPORTED_RATIOS + EXTENDED_RATIOS
        for r in ratios:
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or int(r) not in allowed:
                raise ValueError(f"unsupported compression ratio {r!r}; supported: "
                                 f"{', '.join(map(str, SUPPORTED_RATIOS))} "
                                 f"(also {', '.join(map(str, EXTENDED_RATIOS))})")
        if not ratios:
            raise ValueError("compression_ratio is an empty list")
        return tuple(int(r) for r in ratios)

    def _check_context(self, text_tokens: int, max_new_tokens: int) -> None:
        limit = self.config.llm.max_position_embeddings
        if text_tokens + max_new_tokens > limit:
            raise ValueError(
                f"prompt too long: {text_tokens} text tokens + max_new_tokens {max_new_tokens} "
                f"exceed the model's context of {limit} tokens")

    def memory_plan(self, num_frames: int, compression_ratio: int = 8, question_tokens: int = 64,
                    max_new_tokens: int = 1024) -> MemoryBudget:
        """Device memory a request over ``num_frames`` frames needs (weights included)."""
        ratios = self._ratios(compression_ratio)
        sink = len(tokenize_prompt(self.tokenizer, build_prompt("?")).before)
        plan = plan_request(sink, num_frames * self.config.tokens_per_frame, question_tokens,
                            max_new_tokens, self.config.beacon.window, ratios[:1])
        return self._budget(plan)

    def _budget(self, plan: RequestPlan) -> MemoryBudget:
        weights = sum(p.nbytes for p in self.model.parameters())
        return budget(self.config, plan, weights, _itemsize(self.dtype), VisualStream.BATCH)

    def _allocate(self, plan: RequestPlan, trace: bool) -> _Request:
        llm = self.config.llm
        need = self._budget(plan)
        check_fits(need.total - need.weights, self.device,
                   f"the KV cache for {plan.capacity} slots plus work buffers")
        rows = max(plan.max_window_rows, 1)
        if plan.capacity > self.rope.cos.shape[0]:
            warnings.warn(f"this request uses positions up to {plan.capacity}, beyond the model's "
                          f"{llm.max_position_embeddings}; RoPE is extrapolated unscaled, as upstream does")
            self.rope.ensure(plan.capacity)
        cache = KVCache.allocate(llm.num_layers, llm.num_kv_heads, plan.capacity, llm.head_dim,
                                 self.dtype, self.device)
        scratch = WindowScratch.allocate(llm.num_kv_heads, rows, llm.head_dim, self.dtype, self.device)
        return _Request(plan, cache, scratch, [] if trace else None)

    def _run_text(self, req: _Request, ids: list[int], kind: str) -> torch.Tensor | None:
        if not ids:
            return None
        n = len(ids)
        start = req.cache.reserve(n)
        x = self.model.llm.embed_tokens(torch.tensor(ids, device=self.device))
        hidden = self.model.llm(x, WindowStep(req.cache, self.rope, n, start))
        req.cache.length += n
        self._record(req, kind, n, 0, start, None, None)
        return hidden

    def _run_visual(self, req: _Request, raw: torch.Tensor, w) -> None:
        vst = self.model.llm.beacon_embed_tokens.weight[0]
        x = ops.interleave_vst(raw, vst, w.ratio, w.carry)
        nb, vst_index = ops.vst_slots(w.n_raw, w.ratio, w.carry)
        assert nb == w.n_vst and x.shape[0] == w.rows, "window plan and interleave disagree"
        vst_index = vst_index.to(self.device)
        is_vst = torch.zeros(w.rows, dtype=torch.bool, device=self.device)
        is_vst[vst_index] = True
        raw_index = torch.nonzero(~is_vst).squeeze(1)
        start = req.cache.reserve(nb)
        self.model.llm(x, WindowStep(req.cache, self.rope, w.rows, start, req.scratch, vst_index, raw_index))
        req.cache.length += nb
        self._record(req, "visual", w.n_raw, nb, start, w.ratio, w.carry)

    def _record(self, req: _Request, kind, n_raw, n_vst, kv_before, ratio, carry) -> None:
        if req.trace is None or kind == "decode":
            return
        n_in = n_raw + n_vst
        req.trace.append({
            "kind": kind, "n_raw": n_raw, "n_vst": n_vst, "n_in": n_in, "kv_before": kv_before,
            "pos_first": 0, "pos_last": kv_before + n_in - 1, "ratio": ratio,
            "vst_slots": None if ratio is None else
            {"first": ratio - carry, "step": ratio + 1, "count": n_vst},
            "kv_ptr": req.cache.k.data_ptr(), "kv_length_after": req.cache.length,
        })

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
        return _DTYPES[dtype]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {dtype}; use float32, bfloat16 or float16")
    return dtype


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _stop_strings(stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if not all(isinstance(s, str) and s for s in stops):
        raise ValueError("stop must be a non-empty string or a list of non-empty strings")
    return stops


def _load_tokenizer(folder):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"cannot load the tokenizer from {folder}: {e}") from None
