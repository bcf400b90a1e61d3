"""vxl-fast: ask questions about videos from the command line.

  vxl-fast ask VIDEO "question" --model PATH          encode and answer (streamed)
  vxl-fast encode VIDEO -o clip.vxl --model PATH      compress once ...
  vxl-fast ask --memory clip.vxl "question" --model PATH   ... answer many times
  vxl-fast chat VIDEO --model PATH                    a conversation (one question per line)
  vxl-fast info PATH [--frames N --ratio R]           the checkpoint and its memory plan
  vxl-fast serve --model PATH                         an OpenAI-compatible server
  vxl-fast batch requests.jsonl -o answers.jsonl --model PATH   many videos over Ray workers
  vxl-fast demo                                       all of it on a tiny random checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from . import __version__
from .config import EXTENDED_RATIOS, SUPPORTED_RATIOS
from .engine.stats import with_encode
from .errors import MemoryPlanError
from .limits import DEFAULT_FRAMES
from .options import DEFAULT_MAX_NEW_TOKENS, DEFAULT_RATIO, DEMO_MAX_NEW_TOKENS
from .runtime import default_model, omp_threads
from .terminal import busy_hint, describe, memory_summary, printable, show_warning

GIB = 2 ** 30


class _HELP(argparse.HelpFormatter):
    """Shows each option's default, unless it has none or the help text already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "(default" not in text:
            text += " (default: %(default)s)"
        return text


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, MemoryPlanError) as e:
        print(f"vxl-fast: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vxl-fast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vxl-fast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vxl-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_question_commands(sub)
    _add_encode_command(sub)
    _add_info_command(sub)
    _add_demo_command(sub)
    # NOTE: neither needs its optional packages (FastAPI, Ray) to add its options.
    from .distributed.cli import add_parser as add_batch_parser
    from .distributed.cli import add_ray_options
    from .eval.niah_cli import add_parser as add_niah_parser
    from .server.cli import add_parser as add_serve_parser

    _threads_option(add_ray_options(add_serve_parser(sub)))
    add_batch_parser(sub)
    add_niah_parser(sub)
    for command in sub.choices.values():
        command.formatter_class = _HELP
    return parser


def _add_question_commands(sub) -> None:
    ask = sub.add_parser("ask", help="answer a question about a video, images (or an encoded memory)",
                         usage="vxl-fast ask VIDEO QUESTION | IMAGE IMAGE [IMAGE ...] QUESTION | "
                               "--memory FILE QUESTION [options]", formatter_class=_HELP)
    ask.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="a video (or several images) then one question; only the question with --memory")
    _memory_option(ask)
    _model_options(ask)
    _video_options(ask)
    _generation_options(ask)
    ask.set_defaults(run=_ask)

    chat = sub.add_parser("chat", help="a conversation about a video: one question per line",
                          formatter_class=_HELP)
    chat.add_argument("video", nargs="*", metavar="VIDEO", help="the video, or several images (omit with --memory)")
    _memory_option(chat)
    _model_options(chat)
    _video_options(chat)
    _generation_options(chat)
    chat.set_defaults(run=_chat)


def _add_encode_command(sub) -> None:
    enc = sub.add_parser("encode", help="compress a video into a memory file for later questions",
                         formatter_class=_HELP)
    enc.add_argument("video", metavar="VIDEO")
    enc.add_argument("-o", "--output", required=True, help="the memory file to write (e.g. clip.vxl)")
    _model_options(enc)
    _video_options(enc)
    _output_options(enc)
    enc.set_defaults(run=_encode, memory=None)


def _add_info_command(sub) -> None:
    info = sub.add_parser("info", help="summarise a checkpoint and plan memory for N frames", formatter_class=_HELP)
    info.add_argument("checkpoint", help="a checkpoint folder, or 'released' for sy1998/Video_XL's configuration")
    info.add_argument("--frames", type=int, default=2048, help="frames of the planned request")
    info.add_argument("--ratio", type=int, default=16, help="compression ratio of the planned request")
    info.add_argument("--question-tokens", type=int, default=64, help="question length of the planned request")
    info.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                      help="answer length of the planned request")
    info.add_argument("--dtype", default="bfloat16", help="float32, bfloat16 or float16")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=_info)


def _add_demo_command(sub) -> None:
    demo = sub.add_parser("demo", help="answer a question about the bundled sample video with a tiny "
                                       "random checkpoint (created offline on first use)", formatter_class=_HELP)
    demo.add_argument("question", nargs="?", default="What happens in this video?", help="the question")
    demo.add_argument("--dir", help="where to create the demo files (default: ~/.cache/vxl_fast/demo)")
    demo.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    demo.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on cuda)")
    _threads_option(demo)
    _video_options(demo)
    _generation_options(demo, default_tokens=DEMO_MAX_NEW_TOKENS)
    demo.set_defaults(run=_demo, memory=None)


def _memory_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory", help="a memory file written by 'vxl-fast encode' (instead of VIDEO)")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=default_model(),
                   help="checkpoint folder or hub id (default: $VXL_FAST_MODEL)")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on cuda)")
    _threads_option(p)


def _threads_option(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: $OMP_NUM_THREADS, else the physical cores; on a machine "
                        "shared with other busy processes, fewer are faster, often 1)")
    return p


def _video_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=None,
                   help=f"frames sampled uniformly from a video file (default: {DEFAULT_FRAMES} unless --fps "
                        "is given; a folder or images: all of them)")
    p.add_argument("--fps", type=float, default=None, help="sample this many frames per second instead")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames with --fps")
    p.add_argument("--keyframes", action="store_true",
                   help="take the nearest keyframes instead of the exact frames (faster, not upstream's frames)")
    p.add_argument("--ratio", type=int, default=None,
                   help=f"compression ratio: {', '.join(map(str, SUPPORTED_RATIOS + EXTENDED_RATIOS))} "
                        f"(default: {DEFAULT_RATIO}; with --memory, the memory's own)")


def _generation_options(p: argparse.ArgumentParser, default_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
    p.add_argument("--max-new-tokens", type=int, default=default_tokens, help="longest answer, in tokens")
    p.add_argument("--temperature", type=float, default=None, help="sample at this temperature (default: greedy)")
    p.add_argument("--top-p", type=float, default=None, help="sample from the top-p probability mass")
    p.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens (0: all)")
    p.add_argument("--repetition-penalty", type=float, default=None, help="penalise tokens already seen (1: off)")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="end the answer before this text (repeatable)")
    _output_options(p)


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _options(args):
    """The generation options, checked before anything is loaded."""
    from .options import GenerationOptions

    sample = any(v is not None for v in (args.temperature, args.top_p, args.top_k, args.seed))
    return GenerationOptions(max_new_tokens=args.max_new_tokens, do_sample=sample, temperature=args.temperature,
                             top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty,
                             seed=args.seed, stop=tuple(args.stop or ()))


def _request(args, media):
    """The visual request of the command (None with --memory), checked (``media``: a path, or a list
    of image paths; one image takes the single-image path, as in the API and the server)."""
    from .options import default_num_frames
    from .video.request import IMAGE_SUFFIXES, VisualRequest

    if getattr(args, "memory", None):
        given = [flag for flag, on in (("--frames", args.frames is not None), ("--fps", args.fps is not None),
                                       ("--max-frames", args.max_frames is not None),
                                       ("--keyframes", args.keyframes)) if on]
        if given:
            raise ValueError(f"{', '.join(given)} cannot apply with --memory: the memory is already encoded")
        if media is not None:
            raise ValueError("give either VIDEO or --memory, not both")
        return None
    if media is None:
        raise ValueError("give a VIDEO or --memory FILE")
    sampling = "keyframe" if args.keyframes else "exact"
    if isinstance(media, list) or (os.path.splitext(media)[1].lower() in IMAGE_SUFFIXES and not os.path.isdir(media)):
        return VisualRequest(images=media, num_frames=args.frames, fps=args.fps, max_frames=args.max_frames,
                             sampling=sampling)
    return VisualRequest(video=media, num_frames=default_num_frames(media, args.frames, args.fps), fps=args.fps,
                         max_frames=args.max_frames, sampling=sampling)


def _prepare(args, media, question: str | None, checkpoint=None):
    """Everything checked before the model loads — options, device, files, the checkpoint's config
    and tokenizer, a memory file's header, the token budget: (generation options, request, encoding)."""
    from .device import resolve_device, resolve_dtype
    from .options import EncodeOptions
    from .preflight import check_budget, check_media, check_memory_file

    options = _options(args) if hasattr(args, "max_new_tokens") else None
    request = _request(args, media)
    encoding = None if request is None else EncodeOptions(DEFAULT_RATIO if args.ratio is None else args.ratio,
                                                          progress=_progress(args))
    device = resolve_device(args.device)
    checkpoint = checkpoint or args.model
    if not checkpoint:
        raise ValueError("no checkpoint: pass --model PATH (or set VXL_FAST_MODEL)")
    check_media(request)
    prefix = None
    if request is None:
        prefix = check_memory_file(args.memory, resolve_dtype(args.dtype, device), args.ratio).get("prefix_text")
    check_budget(checkpoint, question or "?", options.max_new_tokens if options else 1,
                 prefix if isinstance(prefix, str) else None)
    return options, request, encoding


def _progress(args) -> bool:
    return not args.quiet and not args.json and sys.stderr.isatty()


def _say(args, message: str | None) -> None:
    if message and not args.quiet and not args.json:
        print(message, file=sys.stderr, flush=True)


def _load(args, path=None):
    from .api import VideoXL
    from .device import physical_cores, resolve_device, set_threads

    path = path or args.model
    threads = set_threads(args.threads, omp_threads())
    device = resolve_device(args.device)
    where = f"{device} with {threads} CPU thread{'s' * (threads > 1)}" if device.type == "cpu" else str(device)
    _say(args, f"vxl-fast: loading {path} on {where} ...")
    if device.type == "cpu":
        _say(args, busy_hint(threads, os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0, physical_cores()))
    return VideoXL.from_pretrained(path, device=args.device, dtype=args.dtype, progress=_progress(args))


def _memory(args, model, request, encoding):
    from .video_memory import VideoMemory

    if request is None:
        memory = VideoMemory.load(args.memory, model, compression_ratio=args.ratio)
        _say(args, f"vxl-fast: loaded {args.memory}: " + describe(memory, encoded=False))
        return memory
    ratio = encoding.compression_ratio
    if request.images is not None:
        count = len(request.images) if isinstance(request.images, list) else 1
        what = f"{count} image{'s' * (count > 1)} (ratio {ratio})"
    else:
        count = f"{request.num_frames} frames" if request.num_frames else (f"{request.fps} fps" if request.fps
                                                                            else "all frames")
        what = f"{request.video} ({count}, ratio {ratio})"
    _say(args, f"vxl-fast: encoding {what}")
    memory = model.encode_request(request, encoding)
    _say(args, describe(memory, encoded=True))
    return memory


def _answer(args, options, memory, question: str, chat, encoded: bool = False) -> None:
    """Print the answer (``encoded``: the memory was made for it in this run, and ``--json``'s
    timings count that encode: ``vision_s`` is its vision time, ``ttft_s``/``total_s`` include it)."""
    stream = chat.stream(question, **vars(options))
    if args.json:
        stream.text()
        out = stream.output
        stats = {k: v for k, v in out.stats.items() if k != "trace"}
        if encoded:
            made = memory.stats
            with_encode(stats, made["vision_s"], made["vision_s"] + made["compress_s"])
        print(json.dumps({"text": out.text, "token_ids": out.token_ids, "finish_reason": out.finish_reason,
                          "stats": stats,
                          "memory": memory_summary(memory)}))
        return
    for piece in stream:
        print(printable(piece), end="", flush=True)
    print()
    s = stream.output.stats
    _say(args, f"[{s['generated_tokens']} tokens; this question: prefill {s['ttft_s'] * 1000:.1f} ms, "
               f"decode {s['decode_tok_s']:.1f} tok/s; {stream.output.finish_reason}]")


def _media(paths: list[str]):
    """One path is a video, a folder of frames or one image; several are images."""
    if not paths:
        return None
    return paths[0] if len(paths) == 1 else list(paths)


def _ask(args) -> int:
    from .prompt import check_question

    *media, question = args.inputs
    if not args.memory and not media:
        raise ValueError("give VIDEO and QUESTION (or --memory FILE and QUESTION)")
    check_question(question)
    options, request, encoding = _prepare(args, _media(media), question)
    model = _load(args)
    memory = _memory(args, model, request, encoding)
    _answer(args, options, memory, question, model.chat(memory), encoded=request is not None)
    return 0


def _chat(args) -> int:
    options, request, encoding = _prepare(args, _media(args.video), None)
    model = _load(args)
    memory = _memory(args, model, request, encoding)
    _say(args, "Ask questions, one per line; an empty line or Ctrl-D ends.")
    chat = model.chat(memory)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        _answer(args, options, memory, line.strip(), chat)


def _encode(args) -> int:
    from .memory.files import check_writable

    output = check_writable(args.output)
    _, request, encoding = _prepare(args, args.video, None)
    model = _load(args)
    memory = _memory(args, model, request, encoding)
    path = memory.save(output)
    if args.json:
        print(json.dumps({"output": str(path), **memory_summary(memory)}))
    else:
        _say(args, f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _demo(args) -> int:
    from .testing.tiny import ensure_demo

    model_path, video = ensure_demo(args.dir)
    options, request, encoding = _prepare(args, str(video), args.question, model_path)
    _say(args, "demo: a tiny checkpoint with RANDOM weights, so the answer is nonsense words; "
               "the pipeline and its numbers are real.")
    model = _load(args, model_path)
    memory = _memory(args, model, request, encoding)
    _answer(args, options, memory, args.question, model.chat(memory), encoded=True)
    _say(args, f"""
Try next (the demo's checkpoint and video; use your own with --model and a video path):
  vxl-fast ask {video} "Where does the square go?" --model {model_path}
  vxl-fast encode {video} -o clip.vxl --model {model_path}
  vxl-fast ask --memory clip.vxl "And then?" --model {model_path}
  vxl-fast chat {video} --model {model_path}
  vxl-fast serve --demo        (after: pip install --no-build-isolation ".[serve]")
  vxl-fast --help, vxl-fast ask --help""")
    return 0


def _info(args) -> int:
    from .info import plan_summary, render_summary

    summary = plan_summary(args.checkpoint, args.frames, args.ratio, args.question_tokens, args.max_new_tokens,
                           args.dtype)
    print(json.dumps(summary) if args.json else render_summary(summary))
    return 0
