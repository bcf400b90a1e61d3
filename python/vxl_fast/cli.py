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

from .runtime import default_model
from .config import EXTENDED_RATIOS, SUPPORTED_RATIOS
from .errors import MemoryPlanError
from .options import DEFAULT_MAX_NEW_TOKENS, DEFAULT_RATIO

GIB = 2 ** 30


class _HELP(argparse.HelpFormatter):
    """Shows each option's default, unless it has none or the help text already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
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

    add_ray_options(add_serve_parser(sub))
    add_batch_parser(sub)
    add_niah_parser(sub)
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
    demo.add_argument("question", nargs="?", default="What happens in this video?")
    demo.add_argument("--dir", help="where to create the demo files (default: ~/.cache/vxl_fast/demo)")
    demo.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    demo.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on cuda)")
    _video_options(demo, default_frames=32)
    _generation_options(demo, default_tokens=64)
    demo.set_defaults(run=_demo, memory=None)


def _memory_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory", help="a memory file written by 'vxl-fast encode' (instead of VIDEO)")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=default_model(),
                   help="checkpoint folder or hub id (default: $VXL_FAST_MODEL)")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on cuda)")


def _video_options(p: argparse.ArgumentParser, default_frames: int = 128) -> None:
    p.add_argument("--frames", type=int, default=None,
                   help=f"frames sampled uniformly (default: {default_frames} unless --fps is given)")
    p.add_argument("--fps", type=float, default=None, help="sample this many frames per second instead")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames with --fps")
    p.add_argument("--keyframes", action="store_true",
                   help="take the nearest keyframes instead of the exact frames (faster, not upstream's frames)")
    p.add_argument("--ratio", type=int, default=None,
                   help=f"compression ratio: {', '.join(map(str, SUPPORTED_RATIOS + EXTENDED_RATIOS))} "
                        f"(default: {DEFAULT_RATIO}; with --memory, the memory's own)")
    p.set_defaults(default_frames=default_frames)


def _generation_options(p: argparse.ArgumentParser, default_tokens: int = 512) -> None:
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
    """The visual request of the command (None with --memory), checked before the model loads
    (``media``: a path, or a list of image paths)."""
    from .video.request import VisualRequest

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
    if isinstance(media, list):  # several images: each one frame of one visual span
        return VisualRequest(images=media, num_frames=args.frames, fps=args.fps, max_frames=args.max_frames,
                             sampling=sampling)
    frames = args.default_frames if args.frames is None and args.fps is None else args.frames
    return VisualRequest(video=media, num_frames=frames, fps=args.fps, max_frames=args.max_frames, sampling=sampling)


def _progress(args) -> bool:
    return not args.quiet and not args.json and sys.stderr.isatty()


def _say(args, message: str) -> None:
    if not args.quiet and not args.json:
        print(message, file=sys.stderr, flush=True)


def _load(args, path=None):
    from .api import VideoXL
    from .device import resolve_device

    path = path or args.model
    if not path:
        raise ValueError("no checkpoint: pass --model PATH (or set VXL_FAST_MODEL)")
    resolve_device(args.device)  # a bad --device is named before the checkpoint is read
    _say(args, f"vxl-fast: loading {path} ...")
    return VideoXL.from_pretrained(path, device=args.device, dtype=args.dtype)


def _memory(args, model, request):
    from .options import EncodeOptions
    from .video_memory import VideoMemory

    if request is None:
        memory = VideoMemory.load(args.memory, model, compression_ratio=args.ratio)
        _say(args, f"vxl-fast: loaded {args.memory}: " + _describe(memory, encoded=False))
        return memory
    options = EncodeOptions(DEFAULT_RATIO if args.ratio is None else args.ratio, progress=_progress(args))
    ratio = options.compression_ratio
    if request.images is not None:
        what = f"{len(request.images)} images (ratio {ratio})"
    else:
        count = f"{request.num_frames} frames" if request.num_frames else f"{request.fps} fps"
        what = f"{request.video} ({count}, ratio {ratio})"
    _say(args, f"vxl-fast: encoding {what}")
    memory = model.encode_request(request, options)
    _say(args, _describe(memory, encoded=True))
    return memory


def _answer(args, options, memory, question: str, chat) -> None:
    stream = chat.stream(question, **vars(options))
    if args.json:
        stream.text()
        out = stream.output
        print(json.dumps({"text": out.text, "token_ids": out.token_ids, "finish_reason": out.finish_reason,
                          "stats": {k: v for k, v in out.stats.items() if k != "trace"},
                          "memory": _memory_summary(memory)}))
        return
    for piece in stream:
        print(piece, end="", flush=True)
    print()
    s = stream.output.stats
    _say(args, f"[{s['generated_tokens']} tokens; this question: prefill {s['ttft_s'] * 1000:.1f} ms, "
               f"decode {s['decode_tok_s']:.1f} tok/s; {stream.output.finish_reason}]")


def _memory_summary(memory) -> dict:
    return {"frames": memory.frames, "windows": len(memory.windows), "vsts": memory.num_vsts,
            "kv_slots": memory.kv_slots, "ratios": list(memory.ratios), **memory.stats}


def _describe(memory, encoded: bool) -> str:
    s = memory.stats
    text = (f"{memory.frames} frames -> {memory.visual_tokens} visual tokens -> {len(memory.windows)} "
            f"windows -> {memory.num_vsts} VSTs kept (ratio {'/'.join(map(str, memory.ratios))}); "
            f"KV {memory.kv_slots} slots, {memory.kv_slots * memory.cache.slot_bytes / 2**20:.2f} MiB")
    if encoded:
        text += f"; encoded now: vision {s['vision_s']:.2f} s, compression {s['compress_s']:.2f} s"
    return text


def _media(paths: list[str]):
    """One path is a video (or a folder or one image, as frames); several are images."""
    if not paths:
        return None
    return paths[0] if len(paths) == 1 else list(paths)


def _ask(args) -> int:
    from .prompt import check_question

    *media, question = args.inputs
    if not args.memory and not media:
        raise ValueError("give VIDEO and QUESTION (or --memory FILE and QUESTION)")
    check_question(question)
    options = _options(args)
    request = _request(args, _media(media))
    model = _load(args)
    memory = _memory(args, model, request)
    _answer(args, options, memory, question, model.chat(memory))
    return 0


def _chat(args) -> int:
    options = _options(args)
    request = _request(args, _media(args.video))
    model = _load(args)
    memory = _memory(args, model, request)
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
    request = _request(args, args.video)
    model = _load(args)
    memory = _memory(args, model, request)
    path = memory.save(output)
    if args.json:
        print(json.dumps({"output": str(path), **_memory_summary(memory)}))
    else:
        _say(args, f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _demo(args) -> int:
    from .testing.tiny import ensure_demo

    options = _options(args)
    model_path, video = ensure_demo(args.dir)
    request = _request(args, str(video))
    _say(args, "demo: a tiny checkpoint with RANDOM weights, so the answer is nonsense words; "
               "the pipeline and its numbers are real.")
    model = _load(args, model_path)
    memory = _memory(args, model, request)
    _answer(args, options, memory, args.question, model.chat(memory))
    return 0


def _info(args) -> int:
    from .info import plan_summary, render_summary

    summary = plan_summary(args.checkpoint, args.frames, args.ratio, args.question_tokens, args.max_new_tokens,
                           args.dtype)
    print(json.dumps(summary) if args.json else render_summary(summary))
    return 0
