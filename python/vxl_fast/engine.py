"""The public engine: load a Video-XL checkpoint, compress a video into a memory, answer."""

from __future__ import annotations

import copy
import hashlib
import os
import time
import warnings
from typing import Generator

import numpy as np
import torch
from tqdm.auto import tqdm

from . import ops
from .chat import Chat
from .config import EXTENDED_RATIOS, SUPPORTED_RATIOS, VideoXLConfig
from .errors import CheckpointError
from .generate import GenerationOutput, Sampler
from .layers.rotary import RotaryTable
from .loader import WeightReader, load_module_weights, resolve_checkpoint
from .memory.budget import MemoryBudget, budget
from .memory.kv import KVCache, WindowScratch, check_fits
from .memory.plan import VisualWindow, next_window, plan_request, plan_windows
from .memory.video_memory import VideoMemory
from .memory.window import WindowStep
from .models.videoxl import VideoXLModel
from .prompt import IMAGE_MARKER, build_prompt, tokenize_prompt
from .stream import Detokenizer, TextStream
from .video.preprocess import check_frames, clip_preprocess
from .visual import VisualSource, VisualStream, check_inputs, frame_feed, frames_source, image_source

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
DEFAULT_RESERVE = 2048  # KV slots a memory keeps free after the video for questions and answers


class VideoXL:
    """A loaded Video-XL model.

    >>> model = VideoXL.from_pretrained("path/to/VideoXL_weight_8")
    >>> out = model.generate(video="clip.mp4", num_frames=128, prompt="What happens?")
    >>> memory = model.encode("clip.mp4", num_frames=128)          # compress once,
    >>> model.ask(memory, "Who is there?").text                     # ask many times
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
        self._fingerprint: str | None = None

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

    @property
    def fingerprint(self) -> str:
        """Identifies the weights (names, shapes, exact sums) and configuration."""
        if self._fingerprint is None:
            h = hashlib.sha256(repr(self.config).encode())
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    h.update(f"{name}{tuple(p.shape)}".encode())
                    h.update(np.float64(torch.sum(p, dtype=torch.float64).item()).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    # ------------------------------------------------------------------ vision
    def preprocess(self, frames) -> torch.Tensor:
        """CLIP preprocessing of uint8 frames [T, H, W, 3] → float32 [T, 3, 336, 336]."""
        return clip_preprocess(check_frames(frames), self.config.vision)

    @torch.inference_mode()
    def visual_tokens(self, *, frames=None, video=None, num_frames=None, fps=None, images=None) -> torch.Tensor:
        """All visual tokens [N, D] the language model would see (144 per frame or image tile)."""
        check_inputs(frames, video, images, num_frames, fps)
        if images is not None:
            source = image_source(images, self.config.image_grid_pinpoints, self.config.vision)
        else:
            feed = frame_feed(frames, video, num_frames, fps, None)
            source = frames_source(torch.cat([c for c, _ in feed.chunks(64)]), self.config.vision)
        stream = self._stream(source)
        return stream.take(stream.num_tokens)

    def _stream(self, source: VisualSource) -> VisualStream:
        encode = lambda p: self.model.encode_frames(p.to(self.device, self.dtype))  # noqa: E731
        return VisualStream(source.count, self.config.tokens_per_frame, source.pixels, encode)

    # ------------------------------------------------------------------ the memory
    @torch.inference_mode()
    def encode(self, video=None, *, frames=None, images=None, num_frames: int | None = None,
               fps: float | None = None, max_frames: int | None = None,
               sampling: str = "exact", compression_ratio: int | list[int] | str = 8,
               system: str | None = None, reserve_tokens: int = DEFAULT_RESERVE, progress: bool = False,
               trace: bool = False) -> VideoMemory:
        """Compress a video into a :class:`VideoMemory` that answers any number of questions
        (:meth:`ask`, :meth:`chat`).

        ``video``: anything :func:`vxl_fast.video.load_video` reads — a video file, a folder of
        frames, a list of images, an array of frames, an iterator of frames (live input); or
        ``frames`` uint8 [T, H, W, 3] (any device), or ``images`` (one image, anyres path).
        No input gives an empty memory to feed with :meth:`VideoMemory.append`.
        ``num_frames`` samples uniformly as upstream does; ``fps`` samples at that rate (at most
        ``max_frames``); ``sampling="keyframe"`` takes the nearest keyframes instead (faster,
        not upstream's frames). Frames are decoded in the background, one window at a time,
        while the model compresses the previous window. ``system`` replaces the default system
        prompt. ``reserve_tokens`` KV slots are kept free for questions and answers (more are
        allocated when a question needs them).
        """
        prefix = build_prompt("?", system=system).partition(IMAGE_MARKER)[0]
        return self._encode(video, frames, images, num_frames, fps, max_frames, sampling, compression_ratio,
                            prefix, reserve_tokens, progress, trace)

    def _encode(self, video, frames, images, num_frames, fps, max_frames, sampling, compression_ratio,
                prefix, reserve_tokens, progress, trace) -> VideoMemory:
        ratios = self._ratios(compression_ratio)
        t0 = time.perf_counter()
        source = feed = None
        if video is not None or frames is not None or images is not None:
            check_inputs(frames, video, images, num_frames, fps)
            if images is not None:
                source = image_source(images, self.config.image_grid_pinpoints, self.config.vision)
            else:
                feed = frame_feed(frames, video, num_frames, fps, max_frames, sampling)
        count = source.count if source is not None else feed.count if feed is not None else None
        prefix_ids = self._tokenize_prefix(prefix)
        capacity = len(prefix_ids) + reserve_tokens
        if count is not None:
            # NOTE: a copy of the generator, so that planning draws the same ratios the windows will.
            planned = plan_windows(len(prefix_ids), count * self.config.tokens_per_frame,
                                   self.config.beacon.window, ratios, copy.deepcopy(self._rng))
            capacity += sum(w.n_vst for w in planned)
        memory = self._new_memory(prefix, prefix_ids, ratios, "image" if images is not None else "video",
                                  capacity, trace)
        self._run_text(memory.cache, prefix_ids, "prefix_text", memory.trace)
        memory.stats["compress_s"] += time.perf_counter() - t0
        with tqdm(total=count, desc="encoding", unit="frame", disable=not progress, leave=False) as bar:
            if source is not None:
                self._ingest(memory, source, bar)
            elif feed is not None:
                per_window = max(1, self.config.beacon.window // self.config.tokens_per_frame)
                for chunk, timestamps in feed.chunks(per_window):
                    self._ingest(memory, frames_source(chunk, self.config.vision, timestamps), bar)
        if count is not None or feed is not None:
            self._flush(memory)
        return memory

    def _new_memory(self, prefix: str, prefix_ids: list[int], ratios: tuple[int, ...], modality: str,
                    capacity: int, trace: bool) -> VideoMemory:
        """An empty memory whose KV buffers are allocated once for ``capacity`` slots."""
        llm = self.config.llm
        rows = self._max_window_rows(ratios)
        need = self._budget(capacity, rows)
        check_fits(need.total - need.weights, self.device,
                   f"the KV cache for {capacity} slots plus work buffers")
        self._ensure_positions(capacity)
        cache = KVCache.allocate(llm.num_layers, llm.num_kv_heads, capacity, llm.head_dim, self.dtype, self.device)
        scratch = WindowScratch.allocate(llm.num_kv_heads, rows, llm.head_dim, self.dtype, self.device)
        return VideoMemory(self, cache, scratch, prefix, prefix_ids, ratios, modality, trace=[] if trace else None)

    def _tokenize_prefix(self, prefix: str) -> list[int]:
        return tokenize_prompt(self.tokenizer, prefix + IMAGE_MARKER).before

    def _append(self, memory: VideoMemory, frames, timestamps, progress: bool) -> None:
        if len(memory.ratios) > 1:
            raise ValueError("live input (append) needs a single compression ratio")
        frames = check_frames(frames)
        if timestamps is not None and len(timestamps) != frames.shape[0]:
            raise ValueError(f"{len(timestamps)} timestamps for {frames.shape[0]} frames")
        if (timestamps is None) != (memory.timestamps is None) and memory.frames:
            raise ValueError("give timestamps for every appended piece or for none")
        with torch.inference_mode(), tqdm(total=frames.shape[0], desc="encoding", unit="frame",
                                          disable=not progress, leave=False) as bar:
            self._ingest(memory, frames_source(frames, self.config.vision,
                                               None if timestamps is None else list(timestamps)), bar)

    def _ingest(self, memory: VideoMemory, source: VisualSource, bar=None) -> None:
        """Encode the source's items and compress every complete window."""
        window = self.config.beacon.window
        stream = self._stream(source)
        t0 = time.perf_counter()
        available = memory.pending_tokens + stream.num_tokens
        while available >= window:
            raw = stream.take(window - memory.pending_tokens)
            if memory.pending is not None:
                raw, memory.pending = torch.cat([memory.pending, raw]), None
            self._compress(memory, raw, memory.cache)
            available -= window
        if stream.taken < stream.num_tokens:
            rest = stream.take(stream.num_tokens - stream.taken)
            memory.pending = rest if memory.pending is None else torch.cat([memory.pending, rest])
        memory.frames += source.count
        if source.timestamps is not None:
            memory.timestamps = (memory.timestamps or []) + list(source.timestamps)
        memory.stats["vision_s"] += stream.seconds
        memory.stats["compress_s"] += time.perf_counter() - t0 - stream.seconds
        if bar is not None:
            bar.update(source.count)

    def _flush(self, memory: VideoMemory) -> None:
        if memory.pending is not None:
            t0 = time.perf_counter()
            with torch.inference_mode():
                raw, memory.pending = memory.pending, None
                self._compress(memory, raw, memory.cache)
            memory.stats["compress_s"] += time.perf_counter() - t0

    def _compress(self, memory: VideoMemory, raw: torch.Tensor, cache: KVCache,
                  commit: bool = True) -> VisualWindow:
        """Run one visual window over ``raw`` tokens; its VSTs land in ``cache``."""
        start = sum(w.n_raw for w in memory.windows)
        w = next_window(len(memory.windows), start, raw.shape[0], memory.carry, cache.length,
                        memory.ratios, self._rng)
        if commit and cache.length + w.n_vst > cache.capacity:
            memory.cache = cache = self._grow(cache, cache.length + w.n_vst + DEFAULT_RESERVE)
        self._run_visual(cache, memory.scratch, raw, w, memory.trace if commit else None)
        if commit:
            memory.windows.append(w)
        return w

    def _grow(self, cache: KVCache, capacity: int) -> KVCache:
        """A larger cache holding ``cache``'s slots (live input outgrowing its plan)."""
        llm = self.config.llm
        check_fits(2 * capacity * cache.slot_bytes, self.device, f"growing the KV cache to {capacity} slots")
        self._ensure_positions(capacity)
        bigger = KVCache.allocate(llm.num_layers, llm.num_kv_heads, capacity, llm.head_dim, self.dtype, self.device)
        bigger.k[:, :, :cache.length] = cache.k[:, :, :cache.length]
        bigger.v[:, :, :cache.length] = cache.v[:, :, :cache.length]
        bigger.length = cache.length
        return bigger

    # ------------------------------------------------------------------ answering
    @torch.inference_mode()
    def ask(self, memory: VideoMemory, prompt: str | None = None, *, messages: list[dict] | None = None,
            **options) -> GenerationOutput:
        """Answer a question (or the last user turn of ``messages``) about an encoded video.

        Options as in :meth:`generate`: ``max_new_tokens``, ``do_sample``, ``temperature``,
        ``top_p``, ``top_k``, ``repetition_penalty``, ``seed``, ``stop``, ``ignore_eos``,
        ``progress``, ``trace``. The memory is left as it was.
        """
        return _drain(self._answer(memory, prompt, messages, **options))

    def stream(self, memory: VideoMemory | None = None, prompt: str | None = None, **options) -> TextStream:
        """Like :meth:`ask` (with a memory) or :meth:`generate` (with visual input), yielding the
        answer's text piece by piece; ``stream.output`` is the :class:`GenerationOutput`."""
        if memory is not None:
            return TextStream(self._answer(memory, prompt, options.pop("messages", None), **options))
        return TextStream(self._generate(prompt=prompt, **options))

    def chat(self, memory: VideoMemory) -> Chat:
        """A multi-turn conversation about ``memory``: ``chat.ask(question)``, ``chat.stream(...)``."""
        return Chat(self, memory)

    def generate(self, *, frames=None, video=None, num_frames: int | None = None, images=None,
                 prompt: str | None = None, messages: list[dict] | None = None,
                 compression_ratio: int | list[int] | str = 8, max_new_tokens: int = 1024,
                 **options) -> GenerationOutput:
        """Answer a question about a video, frames or one image: :meth:`encode`, then :meth:`ask`.

        Visual input (exactly one): ``frames`` uint8 [T, H, W, 3]; ``video`` a file path with
        ``num_frames`` sampled uniformly as upstream does (or ``fps=``, ``max_frames=``);
        ``images`` one image (path, PIL image or uint8 [H, W, 3]) on upstream's anyres path.
        Text: ``prompt`` (a question) or ``messages`` (a conversation).
        ``compression_ratio``: 2, 4, 8, 12 or 16 (32 and 64 also run, as upstream does);
        a list draws one per window as upstream's ``step-random``; ``"config"`` uses the
        checkpoint's ``beacon_ratio``.
        Decoding: greedy unless ``do_sample``; ``temperature``, ``top_k``, ``top_p``,
        ``repetition_penalty`` left as None come from ``generation_config.json`` (HF semantics;
        ``top_k=0`` / ``top_p=1`` disable those filters); ``seed``; ``stop`` strings;
        ``ignore_eos`` generates exactly ``max_new_tokens``. ``progress`` shows progress bars;
        ``trace`` adds a record of the window loop to ``stats["trace"]``.
        """
        return _drain(self._generate(frames=frames, video=video, num_frames=num_frames, images=images,
                                     prompt=prompt, messages=messages, compression_ratio=compression_ratio,
                                     max_new_tokens=max_new_tokens, **options))

    def _generate(self, *, frames=None, video=None, num_frames=None, fps=None, max_frames=None, images=None,
                  sampling="exact",
                  prompt=None, messages=None, compression_ratio=8, max_new_tokens=1024, progress=False,
                  trace=False, **options) -> Generator[str, None, GenerationOutput]:
        if frames is None and video is None and images is None:
            raise ValueError("pass exactly one visual input: frames=, video= or images=")
        text = build_prompt(prompt, messages)
        tok = tokenize_prompt(self.tokenizer, text)
        _check_max_new(max_new_tokens)
        self._check_context(len(tok.before) + len(tok.after), max_new_tokens)
        with torch.inference_mode():
            memory = self._encode(video, frames, images, num_frames, fps, max_frames, sampling, compression_ratio,
                                  text.partition(IMAGE_MARKER)[0], len(tok.after) + max_new_tokens,
                                  progress, trace)
        out = yield from self._answer(memory, prompt, messages, max_new_tokens=max_new_tokens,
                                      progress=progress, trace=trace, **options)
        out.stats["vision_s"] = memory.stats["vision_s"]
        out.stats["prefill_s"] += memory.stats["compress_s"]
        out.stats["ttft_s"] += memory.stats["vision_s"] + memory.stats["compress_s"]
        out.stats["total_s"] += memory.stats["vision_s"] + memory.stats["compress_s"]
        if trace:
            out.stats["trace"] = memory.trace + out.stats["trace"]
        return out

    def _answer(self, memory: VideoMemory, prompt, messages, *, max_new_tokens: int = 1024,
                do_sample: bool = False, temperature: float | None = None, top_p: float | None = None,
                top_k: int | None = None, repetition_penalty: float | None = None, seed: int | None = None,
                stop: str | list[str] | None = None, ignore_eos: bool = False, progress: bool = False,
                trace: bool = False) -> Generator[str, None, GenerationOutput]:
        if not isinstance(memory, VideoMemory) or memory.model is not self:
            raise ValueError("this memory was not made by this model; use VideoMemory.load(path, model)")
        _check_max_new(max_new_tokens)
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
        text = build_prompt(prompt, messages, system=_system_of(memory.prefix_text))
        if text.partition(IMAGE_MARKER)[0] != memory.prefix_text:
            raise ValueError("the prompt's text before the video differs from the one this memory was "
                             "encoded with (system prompt or earlier turns); encode it again")
        tok = tokenize_prompt(self.tokenizer, text)
        self._check_context(len(tok.before) + len(tok.after), max_new_tokens)
        sampler.observe(tok.before + tok.after)

        t0 = time.perf_counter()
        with torch.inference_mode():
            # Questions use the slots after the memory's: a view of its buffers with its own length.
            cache = KVCache(memory.cache.k, memory.cache.v, memory.cache.length)
            pending_vsts = 0
            if memory.pending is not None:
                pending_vsts = next_window(0, 0, memory.pending_tokens, memory.carry, 0, memory.ratios, None).n_vst
            needed = cache.length + pending_vsts + len(tok.after) + max_new_tokens
            if needed > cache.capacity:
                memory.cache = self._grow(memory.cache, needed)
                cache = KVCache(memory.cache.k, memory.cache.v, memory.cache.length)
            answer_trace = [] if trace else None
            if memory.pending is not None:  # the incomplete last window, not kept in the memory
                self._compress(memory, memory.pending, cache, commit=False)
            hidden = None
            for a in range(0, len(tok.after), self.config.beacon.window):
                hidden = self._run_text(cache, tok.after[a:a + self.config.beacon.window], "text", answer_trace)
            logits = self.model.logits(hidden[-1:])[0]
            self._sync()
        t_first = time.perf_counter()

        eos = set() if ignore_eos else set(self.config.eos_token_ids)
        det = Detokenizer(self.tokenizer, stops)
        ids, finish, first_logits = det.ids, "length", logits
        with tqdm(total=max_new_tokens, desc="generating", unit="tok", disable=not progress, leave=False) as bar:
            while True:
                token = sampler(logits)
                piece = det.push(token)
                bar.update(1)
                if piece:
                    yield piece
                if token in eos:
                    finish = "eos"
                    break
                if det.stopped:
                    finish = "stop"
                    break
                if len(ids) >= max_new_tokens:
                    break
                with torch.inference_mode():
                    logits = self.model.logits(self._run_text(cache, [token], "decode", None))[0]
        self._sync()
        t_end = time.perf_counter()
        piece = det.finish()
        if piece:
            yield piece

        stats = _answer_stats(memory, cache, len(tok.before) + len(tok.after), len(ids), pending_vsts,
                              t_first - t0, t_end - t_first)
        if trace:
            stats["trace"] = answer_trace
        return GenerationOutput(list(ids), det.emitted, first_logits, finish, stats)

    # ------------------------------------------------------------------ planning
    def memory_plan(self, num_frames: int, compression_ratio: int = 8, question_tokens: int = 64,
                    max_new_tokens: int = 1024) -> MemoryBudget:
        """Device memory a request over ``num_frames`` frames needs (weights included)."""
        ratios = self._ratios(compression_ratio)
        sink = len(self._tokenize_prefix(build_prompt("?").partition(IMAGE_MARKER)[0]))
        plan = plan_request(sink, num_frames * self.config.tokens_per_frame, question_tokens,
                            max_new_tokens, self.config.beacon.window, ratios[:1])
        return self._budget(plan.capacity, plan.max_window_rows)

    def _budget(self, capacity: int, rows: int) -> MemoryBudget:
        weights = sum(p.nbytes for p in self.model.parameters())
        return budget(self.config, capacity, rows, weights, _itemsize(self.dtype), VisualStream.BATCH)

    def _max_window_rows(self, ratios: tuple[int, ...]) -> int:
        """Rows of the largest window any of ``ratios`` can make (carry included)."""
        w = self.config.beacon.window
        return max(w + (w + r - 1) // r for r in ratios)

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

    def _ensure_positions(self, capacity: int) -> None:
        if capacity > self.rope.cos.shape[0]:
            warnings.warn(f"this request uses positions up to {capacity}, beyond the model's "
                          f"{self.config.llm.max_position_embeddings}; RoPE is extrapolated unscaled, "
                          "as upstream does")
            self.rope.ensure(capacity)

    # ------------------------------------------------------------------ window steps
    def _run_text(self, cache: KVCache, ids: list[int], kind: str, trace: list | None) -> torch.Tensor | None:
        if not ids:
            return None
        n = len(ids)
        start = cache.reserve(n)
        x = self.model.llm.embed_tokens(torch.tensor(ids, device=self.device))
        hidden = self.model.llm(x, WindowStep(cache, self.rope, n, start))
        cache.length += n
        _record(trace, cache, kind, n, 0, start, None, None)
        return hidden

    def _run_visual(self, cache: KVCache, scratch: WindowScratch, raw: torch.Tensor, w: VisualWindow,
                    trace: list | None) -> None:
        vst = self.model.llm.beacon_embed_tokens.weight[0]
        x = ops.interleave_vst(raw, vst, w.ratio, w.carry)
        nb, vst_index = ops.vst_slots(w.n_raw, w.ratio, w.carry)
        assert nb == w.n_vst and x.shape[0] == w.rows, "window plan and interleave disagree"
        vst_index = vst_index.to(self.device)
        is_vst = torch.zeros(w.rows, dtype=torch.bool, device=self.device)
        is_vst[vst_index] = True
        raw_index = torch.nonzero(~is_vst).squeeze(1)
        start = cache.reserve(nb)
        self.model.llm(x, WindowStep(cache, self.rope, w.rows, start, scratch, vst_index, raw_index))
        cache.length += nb
        _record(trace, cache, "visual", w.n_raw, nb, start, w.ratio, w.carry)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _answer_stats(memory: VideoMemory, cache: KVCache, prompt_tokens: int, new_tokens: int,
                  pending_vsts: int, prefill_s: float, decode_s: float) -> dict:
    return {
        "modality": memory.modality,
        "frames": memory.frames if memory.modality == "video" else 0,
        "image_tiles": memory.frames if memory.modality == "image" else 0,
        "visual_tokens": memory.visual_tokens,
        "windows": len(memory.windows) + (pending_vsts > 0),
        "vsts": memory.num_vsts + pending_vsts,
        "vst_per_window": [w.n_vst for w in memory.windows] + ([pending_vsts] if pending_vsts else []),
        "compression_ratios": sorted({w.ratio for w in memory.windows}) or list(memory.ratios),
        "prompt_tokens": prompt_tokens,
        "generated_tokens": new_tokens,
        "kv_slots": cache.length,
        "kv_capacity": cache.capacity,
        "kv_bytes": cache.nbytes,
        "kv_bytes_used": cache.slot_bytes * cache.length,
        "scratch_bytes": memory.scratch.nbytes,
        "vision_s": 0.0,
        "prefill_s": prefill_s,
        "ttft_s": prefill_s,
        "decode_s": decode_s,
        "decode_tok_s": (new_tokens - 1) / decode_s if new_tokens > 1 else 0.0,
        "total_s": prefill_s + decode_s,
    }


def _record(trace: list | None, cache: KVCache, kind, n_raw, n_vst, kv_before, ratio, carry) -> None:
    """One entry of the window trace, in the golden cases' format (plus buffer facts)."""
    if trace is None:
        return
    n_in = n_raw + n_vst
    trace.append({
        "kind": kind, "n_raw": n_raw, "n_vst": n_vst, "n_in": n_in, "kv_before": kv_before,
        "pos_first": 0, "pos_last": kv_before + n_in - 1, "ratio": ratio,
        "vst_slots": None if ratio is None else {"first": ratio - carry, "step": ratio + 1, "count": n_vst},
        "kv_ptr": cache.k.data_ptr(), "kv_length_after": cache.length,
    })


def _drain(pieces: Generator[str, None, GenerationOutput]) -> GenerationOutput:
    """Run a streamed answer to its end; its output."""
    try:
        while True:
            next(pieces)
    except StopIteration as done:
        return done.value


def _system_of(prefix_text: str) -> str:
    """The system prompt a memory's prefix carries ("" when it has none), to rebuild prompts."""
    head = "<|im_start|>system\n"
    if prefix_text.startswith(head) and "<|im_end|>" in prefix_text:
        return prefix_text[len(head):prefix_text.index("<|im_end|>")]
    return ""


def _check_max_new(max_new_tokens) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")


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

