"""The public facade: :class:`VideoXL` and its verbs, each a few lines that call the engine."""

from __future__ import annotations

import os
import threading
from dataclasses import fields
from typing import Generator

import torch

from .chat import Chat
from .config import VideoXLConfig
from .device import itemsize, resolve_device, resolve_dtype
from .engine import answer as answering
from .engine import compress
from .engine.runner import Runner
from .engine.stats import GenerationOutput
from .limits import Limits
from .loader import load_model, load_tokenizer, random_model, resolve_checkpoint, tiny_tokenizer
from .memory.budget import MemoryBudget, plan_memory
from .memory.plan import parse_ratios
from .options import (DEFAULT_MAX_NEW_TOKENS, DEFAULT_RATIO, DEFAULT_RESERVE, EncodeOptions, GenerationOptions,
                      check_context, check_count, default_num_frames)
from .prompt import build_prompt, prefix_ids, prefix_text, split_prefix, system_of, tokenize_prompt
from .runtime import RuntimeOptions
from .stream import TextStream
from .video.inputs import visual_input
from .video.preprocess import check_frames, clip_preprocess
from .video.request import VisualRequest
from .video_memory import VideoMemory


class VideoXL:
    """A loaded Video-XL model.

    >>> model = VideoXL.from_pretrained("path/to/VideoXL_weight_8")
    >>> out = model.generate(video="clip.mp4", num_frames=128, prompt="What happens?")
    >>> memory = model.encode("clip.mp4", num_frames=128)          # compress once,
    >>> model.ask(memory, "Who is there?").text                     # ask many times

    Safe to call from several threads: device work runs one call at a time (a lock in the
    runner), so concurrent calls give the answers sequential calls give.
    """

    def __init__(self, config: VideoXLConfig, model: torch.nn.Module, tokenizer, device: torch.device,
                 dtype: torch.dtype, path: str = "<random>", runtime: RuntimeOptions | None = None):
        self.config, self.tokenizer = config, tokenizer
        self.path = path  # where the weights came from (the server names the model after it)
        self.runner = Runner(config, model, device, dtype, runtime or RuntimeOptions.from_env())

    @property
    def model(self) -> torch.nn.Module:
        return self.runner.model

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.runner.dtype

    @property
    def fingerprint(self) -> str:
        """Identifies the weights (names, shapes, exact sums) and configuration."""
        return self.runner.fingerprint

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, runtime: RuntimeOptions | None = None,
                        progress: bool = False) -> "VideoXL":
        """Load a checkpoint folder laid out like ``sy1998/Video_XL`` (or a hub id when online).

        device: default CUDA when available, else CPU. dtype: default bfloat16 on CUDA, float32
        on CPU (float32 reproduces the reference goldens). runtime: how to run it (attention
        backend, VST projection, CUDA graphs, kernel policy); default ``RuntimeOptions.from_env()``.
        progress: a bar over the weights as they load (on stderr).
        """
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        folder = resolve_checkpoint(path)
        cfg = VideoXLConfig.from_dir(folder)
        tokenizer = load_tokenizer(folder)
        return cls(cfg, load_model(folder, cfg, dev, dt, progress), tokenizer, dev, dt, str(folder), runtime)

    @classmethod
    def random(cls, config: VideoXLConfig | None = None, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None, seed: int = 0, tokenizer=None,
               runtime: RuntimeOptions | None = None) -> "VideoXL":
        """A model with random weights built directly on ``device`` (no checkpoint, no CPU init, no file).

        ``config`` defaults to the released Video-XL configuration. The modules and code path are
        those of a loaded checkpoint; for benchmarks and memory planning. The tokenizer defaults
        to :func:`vxl_fast.loader.tiny_tokenizer`, the demo checkpoint's, built in memory (prompt
        ids stay below its vocabulary of 646 tokens).
        """
        cfg = config or VideoXLConfig.released()
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if tokenizer is None:
            tokenizer = tiny_tokenizer()
        return cls(cfg, random_model(cfg, dev, dt, seed), tokenizer, dev, dt, runtime=runtime)

    # ------------------------------------------------------------------ vision
    def preprocess(self, frames) -> torch.Tensor:
        """CLIP preprocessing of uint8 frames [T, H, W, 3] → float32 [T, 3, 336, 336]."""
        return clip_preprocess(check_frames(frames), self.config.vision)

    def visual_tokens(self, *, frames=None, video=None, num_frames=None, fps=None, images=None) -> torch.Tensor:
        """All visual tokens [N, D] the language model would see (144 per frame or image tile)."""
        request = VisualRequest(frames=frames, video=video, images=images, fps=fps,
                                num_frames=default_num_frames(video, num_frames, fps))
        return compress.visual_tokens(self.runner, visual_input(self.config, request))

    # ------------------------------------------------------------------ the memory
    def encode(self, video=None, *, frames=None, images=None, num_frames: int | None = None,
               fps: float | None = None, max_frames: int | None = None,
               sampling: str = "exact", decoder: str = "auto",
               compression_ratio: int | list[int] | str = DEFAULT_RATIO, system: str | None = None,
               reserve_tokens: int = DEFAULT_RESERVE, progress: bool = False, trace: bool = False,
               cancel: threading.Event | None = None, limits: Limits | None = None) -> VideoMemory:
        """Compress a video into a :class:`VideoMemory` that answers any number of questions
        (:meth:`ask`, :meth:`chat`).

        ``video``: anything :func:`vxl_fast.video.load_video` reads — a video file, a folder of
        frames, a list of images, an array of frames, an iterator of frames (live input); or
        ``frames`` uint8 [T, H, W, 3] (any device), or ``images`` (one image, anyres path).
        No input gives an empty memory to feed with :meth:`VideoMemory.append`.
        ``num_frames`` samples uniformly as upstream does; ``fps`` samples at that rate (at most
        ``max_frames``); a video file given neither samples ``DEFAULT_FRAMES`` (128, as every entry
        point does); ``sampling="keyframe"`` takes the nearest keyframes instead (faster,
        not upstream's frames). ``decoder``: ``"auto"``, ``"cpu"``, ``"nvdec"`` (the GPU's video
        decoder, the same pixels; see :func:`vxl_fast.video.open_video`) or ``"dali"`` (NVIDIA
        DALI, also for ``images``; README "DALI"). Frames are
        decoded in the background, a vision batch at a time, while the model compresses the
        previous windows. ``system`` replaces the default system
        prompt. ``reserve_tokens`` KV slots are kept free for questions and answers (more are
        allocated when a question needs them). ``cancel`` (a ``threading.Event``), once set, stops
        the encode before its next window with ``EncodeCancelled``. ``limits`` (a
        :class:`vxl_fast.limits.Limits`, default ``Limits()``) bounds the pixels per frame or image,
        the frames, the images and the decoded bytes held at once; files over them are refused
        from their headers, before decoding. Pass a larger one to raise them.
        """
        request = VisualRequest.optional(frames=frames, video=video, images=images, fps=fps, max_frames=max_frames,
                                         num_frames=default_num_frames(video, num_frames, fps), sampling=sampling,
                                         decoder=decoder, limits=limits)
        return self.encode_request(request, EncodeOptions(compression_ratio, reserve_tokens, system, progress, trace),
                                   cancel)

    def encode_request(self, request: VisualRequest | None, options: EncodeOptions | None = None,
                       cancel: threading.Event | None = None) -> VideoMemory:
        """:meth:`encode` of a checked request (None: an empty memory) with ``options`` (default:
        ``EncodeOptions()``)."""
        options = options or EncodeOptions()
        return self._encode(prefix_text(options.system), request, options, cancel)

    def _encode(self, prefix: str, request: VisualRequest | None, options: EncodeOptions,
                cancel: threading.Event | None = None) -> VideoMemory:
        visual = None if request is None else visual_input(self.config, request)
        state = compress.encode(self.runner, prefix, prefix_ids(self.tokenizer, prefix), visual, options, cancel)
        return VideoMemory(self, state)

    # ------------------------------------------------------------------ answering
    def ask(self, memory: VideoMemory, prompt: str | None = None, *, messages: list[dict] | None = None,
            **options) -> GenerationOutput:
        """Answer a question (or the last user turn of ``messages``) about an encoded video.

        Options as in :meth:`generate`: ``max_new_tokens``, ``do_sample``, ``temperature``,
        ``top_p``, ``top_k``, ``repetition_penalty``, ``seed``, ``stop``, ``ignore_eos``,
        ``min_tokens``, ``limits``, ``progress``, ``trace``. The memory is left as it was.
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
                 compression_ratio: int | list[int] | str = DEFAULT_RATIO, **options) -> GenerationOutput:
        """Answer a question about a video, frames or one image: :meth:`encode`, then :meth:`ask`.

        Visual input (exactly one): ``frames`` uint8 [T, H, W, 3]; ``video`` a file path with
        ``num_frames`` sampled uniformly as upstream does (or ``fps=``, ``max_frames=``,
        ``sampling=``, ``decoder=``); ``images`` one image (path, PIL image or uint8 [H, W, 3]) on upstream's
        anyres path. Text: ``prompt`` (a question) or ``messages`` (a conversation).
        ``compression_ratio``: 2, 4, 8, 12 or 16 (32 and 64 also run, as upstream does);
        a list draws one per window as upstream's ``step-random``; ``"config"`` uses the
        checkpoint's ``beacon_ratio``. Decoding options: see :class:`GenerationOptions`
        (greedy unless ``do_sample``). ``progress`` shows progress bars; ``trace`` adds a record
        of the window loop to ``stats["trace"]``. Every option is checked before any decoding.
        """
        return _drain(self._generate(frames=frames, video=video, num_frames=num_frames, images=images,
                                     prompt=prompt, messages=messages, compression_ratio=compression_ratio, **options))

    def _generate(self, prompt=None, messages=None, compression_ratio=DEFAULT_RATIO, progress=False, trace=False,
                  **options) -> Generator[str, None, GenerationOutput]:
        visual = {f.name: options.pop(f.name) for f in fields(VisualRequest) if f.name in options}
        visual["num_frames"] = default_num_frames(visual.get("video"), visual.get("num_frames"), visual.get("fps"))
        request = VisualRequest(**visual)
        opts = GenerationOptions.from_kwargs(**options)
        text = build_prompt(prompt, messages)
        opts.limits.check_prompt(text, self.config.llm.max_position_embeddings)
        tok = tokenize_prompt(self.tokenizer, text)
        self._check_context(tok, opts.max_new_tokens)
        encoding = EncodeOptions(compression_ratio, len(tok.after) + opts.max_new_tokens, None, progress, trace)
        memory = self._encode(split_prefix(text), request, encoding)
        return (yield from answering.answer(self.runner, self.tokenizer, memory.state, tok, opts,
                                            progress=progress, trace=trace, count_encoding=True))

    def _answer(self, memory: VideoMemory, prompt, messages, progress: bool = False, trace: bool = False,
                **options) -> Generator[str, None, GenerationOutput]:
        if not isinstance(memory, VideoMemory) or memory.model is not self:
            raise ValueError("this memory was not made by this model; use VideoMemory.load(path, model)")
        opts = GenerationOptions.from_kwargs(**options)
        text = build_prompt(prompt, messages, system=system_of(memory.prefix_text))
        if split_prefix(text) != memory.prefix_text:
            raise ValueError("the prompt's text before the video differs from the one this memory was "
                             "encoded with (system prompt or earlier turns); encode it again")
        opts.limits.check_prompt(text, self.config.llm.max_position_embeddings)
        tok = tokenize_prompt(self.tokenizer, text)
        self._check_context(tok, opts.max_new_tokens)
        return (yield from answering.answer(self.runner, self.tokenizer, memory.state, tok, opts,
                                            progress=progress, trace=trace))

    def _check_context(self, tok, max_new_tokens: int) -> None:
        check_context(len(tok.before) + len(tok.after), max_new_tokens, self.config.llm.max_position_embeddings)

    # ------------------------------------------------------------------ planning
    def memory_plan(self, num_frames: int, compression_ratio: int = DEFAULT_RATIO, question_tokens: int = 64,
                    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> MemoryBudget:
        """Device memory a request over ``num_frames`` frames needs (weights included)."""
        check_count("num_frames", num_frames, low=1)
        check_count("question_tokens", question_tokens, low=0)
        check_count("max_new_tokens", max_new_tokens, low=1)
        ratios = parse_ratios(compression_ratio, self.config.beacon.ratios)
        sink = len(prefix_ids(self.tokenizer, prefix_text()))
        _, need = plan_memory(self.config, sink, num_frames, ratios, question_tokens, max_new_tokens,
                              self.runner.weight_bytes, itemsize(self.dtype),
                              masked_attention=self.runner.attention_name == "masked")
        return need


def _drain(pieces: Generator[str, None, GenerationOutput]) -> GenerationOutput:
    """Run a streamed answer to its end; its output."""
    try:
        while True:
            next(pieces)
    except StopIteration as done:
        return done.value
