"""``vxl-fast``: ask questions about videos from the command line.

  vxl-fast ask VIDEO "question" --model PATH          encode and answer (streamed)
  vxl-fast encode VIDEO -o clip.vxl --model PATH      compress once ...
  vxl-fast ask --memory clip.vxl "question" --model PATH   ... answer many times
  vxl-fast chat VIDEO --model PATH                    a conversation (one question per line)
  vxl-fast info PATH [--frames N --ratio R]           the checkpoint and its memory plan
  vxl-fast demo                                       all of it on a tiny random checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .config import EXTENDED_RATIOS, SUPPORTED_RATIOS
from .errors import MemoryPlanError

GIB = 2 ** 30
RELEASED_SINK = 14  # Qwen2's tokens before <image> in the default prompt (SPEC.md §3.2)


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

    ask = sub.add_parser("ask", help="answer a question about a video (or an encoded memory)")
    ask.add_argument("inputs", nargs="+", metavar="[VIDEO] QUESTION")
    ask.add_argument("--memory", help="a memory file written by `vxl-fast encode` (instead of VIDEO)")
    _model_options(ask)
    _video_options(ask)
    _generation_options(ask)
    ask.set_defaults(run=_ask)

    chat = sub.add_parser("chat", help="a conversation about a video: one question per line")
    chat.add_argument("video", nargs="?")
    chat.add_argument("--memory", help="a memory file written by `vxl-fast encode` (instead of VIDEO)")
    _model_options(chat)
    _video_options(chat)
    _generation_options(chat)
    chat.set_defaults(run=_chat)

    enc = sub.add_parser("encode", help="compress a video into a memory file for later questions")
    enc.add_argument("video")
    enc.add_argument("-o", "--output", required=True, help="the memory file to write (e.g. clip.vxl)")
    _model_options(enc)
    _video_options(enc)
    enc.add_argument("--json", action="store_true", help="print one JSON object")
    enc.add_argument("--quiet", action="store_true", help="no progress output")
    enc.set_defaults(run=_encode, memory=None)

    info = sub.add_parser("info", help="summarise a checkpoint and plan memory for N frames")
    info.add_argument("checkpoint", help="a checkpoint folder, or 'released' for sy1998/Video_XL's configuration")
    info.add_argument("--frames", type=int, default=2048)
    info.add_argument("--ratio", type=int, default=16)
    info.add_argument("--dtype", default="bfloat16")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=_info)

    demo = sub.add_parser("demo", help="answer a question about the bundled sample video with a tiny "
                                       "random checkpoint (created offline on first use)")
    demo.add_argument("question", nargs="?", default="What happens in this video?")
    demo.add_argument("--dir", help="where to create the demo files (default ~/.cache/vxl_fast/demo)")
    demo.add_argument("--device", default=None)
    demo.add_argument("--dtype", default=None, help="float32, bfloat16 or float16")
    _video_options(demo, default_frames=32)
    _generation_options(demo, default_tokens=64)
    demo.set_defaults(run=_demo, memory=None)
    return parser


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=os.environ.get("VXL_FAST_MODEL"),
                   help="checkpoint folder or hub id (default: $VXL_FAST_MODEL)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16")


def _video_options(p: argparse.ArgumentParser, default_frames: int = 128) -> None:
    p.add_argument("--frames", type=int, default=None,
                   help=f"frames sampled uniformly (default {default_frames})")
    p.add_argument("--fps", type=float, default=None, help="sample this many frames per second instead")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames with --fps")
    p.add_argument("--keyframes", action="store_true",
                   help="take the nearest keyframes instead of the exact frames (faster, not upstream's frames)")
    p.add_argument("--ratio", type=int, default=8,
                   help=f"compression ratio: {', '.join(map(str, SUPPORTED_RATIOS + EXTENDED_RATIOS))}")
    p.set_defaults(default_frames=default_frames)


def _generation_options(p: argparse.ArgumentParser, default_tokens: int = 512) -> None:
    p.add_argument("--max-new-tokens", type=int, default=default_tokens)
    p.add_argument("--temperature", type=float, default=None, help="sample (default: greedy)")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _sampling(args) -> dict:
    sample = args.temperature is not None or args.top_p is not None or args.seed is not None
    return dict(max_new_tokens=args.max_new_tokens, do_sample=sample, temperature=args.temperature,
                top_p=args.top_p, seed=args.seed)


def _progress(args) -> bool:
    return not args.quiet and not args.json and sys.stdout.isatty()


def _say(args, message: str) -> None:
    if not args.quiet and not args.json:
        print(message, file=sys.stderr, flush=True)


def _load(args):
    from .engine import VideoXL

    if not args.model:
        raise ValueError("no checkpoint: pass --model PATH (or set VXL_FAST_MODEL)")
    _say(args, f"vxl-fast: loading {args.model}")
    return VideoXL.from_pretrained(args.model, device=args.device, dtype=args.dtype)


def _memory(args, model, video):
    from .memory.video_memory import VideoMemory

    if args.memory:
        if video is not None:
            raise ValueError("give either VIDEO or --memory, not both")
        return VideoMemory.load(args.memory, model, compression_ratio=args.ratio)
    if video is None:
        raise ValueError("give a VIDEO or --memory FILE")
    frames = args.frames if args.fps is None else None
    if frames is None and args.fps is None:
        frames = args.default_frames
    _say(args, f"vxl-fast: encoding {video} ({f'{frames} frames' if frames else f'{args.fps} fps'}, "
               f"ratio {args.ratio})")
    return model.encode(video, num_frames=frames, fps=args.fps, max_frames=args.max_frames,
                        sampling="keyframe" if args.keyframes else "exact", compression_ratio=args.ratio,
                        progress=_progress(args))


def _answer(args, model, memory, question: str, chat=None) -> None:
    asker = chat or model
    stream = asker.stream(question, **_sampling(args)) if chat else \
        model.stream(memory, question, **_sampling(args), progress=False)
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
    _say(args, f"[{s['generated_tokens']} tokens, question prefill {s['ttft_s'] * 1000:.1f} ms, "
               f"{s['decode_tok_s']:.1f} tok/s, {stream.output.finish_reason}]")


def _memory_summary(memory) -> dict:
    return {"frames": memory.frames, "windows": len(memory.windows), "vsts": memory.num_vsts,
            "kv_slots": memory.kv_slots, "ratios": list(memory.ratios), **memory.stats}


def _ask(args) -> int:
    if args.memory:
        if len(args.inputs) != 1:
            raise ValueError("with --memory give only the QUESTION")
        video, question = None, args.inputs[0]
    elif len(args.inputs) != 2:
        raise ValueError("give VIDEO and QUESTION (or --memory FILE and QUESTION)")
    else:
        video, question = args.inputs
    if not question.strip():
        raise ValueError("the question is empty")
    model = _load(args)
    memory = _memory(args, model, video)
    _say(args, _describe(memory))
    _answer(args, model, memory, question)
    return 0


def _chat(args) -> int:
    model = _load(args)
    memory = _memory(args, model, args.video)
    _say(args, _describe(memory) + "\nAsk questions, one per line; an empty line or Ctrl-D ends.")
    chat = model.chat(memory)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        _answer(args, model, memory, line.strip(), chat=chat)


def _encode(args) -> int:
    model = _load(args)
    memory = _memory(args, model, args.video)
    path = memory.save(args.output)
    if args.json:
        print(json.dumps({"output": str(path), **_memory_summary(memory)}))
    else:
        _say(args, _describe(memory) + f"\nwrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _describe(memory) -> str:
    s = memory.stats
    return (f"{memory.frames} frames -> {memory.visual_tokens} visual tokens -> {len(memory.windows)} "
            f"windows -> {memory.num_vsts} VSTs kept (ratio {'/'.join(map(str, memory.ratios))}); "
            f"KV {memory.kv_slots} slots, {memory.kv_slots * memory.cache.slot_bytes / 2**20:.2f} MiB; "
            f"vision {s['vision_s']:.2f} s, compression {s['compress_s']:.2f} s")


def _info(args) -> int:
    import torch

    from .config import VideoXLConfig
    from .engine import _itemsize, _load_tokenizer, _resolve_dtype
    from .loader import resolve_checkpoint
    from .memory.budget import budget
    from .memory.plan import plan_request
    from .models.videoxl import VideoXLModel
    from .prompt import build_prompt, tokenize_prompt

    if args.checkpoint == "released":  # plan for sy1998/Video_XL without its files
        folder, cfg, sink = "released Video-XL configuration", VideoXLConfig.released(), RELEASED_SINK
    else:
        folder = resolve_checkpoint(args.checkpoint)
        cfg = VideoXLConfig.from_dir(folder)
        sink = len(tokenize_prompt(_load_tokenizer(folder), build_prompt("?")).before)
    dtype = _resolve_dtype(args.dtype, torch.device("cpu"))
    if args.frames < 1:
        raise ValueError(f"--frames must be a positive integer, got {args.frames}")
    if args.ratio not in SUPPORTED_RATIOS + EXTENDED_RATIOS:
        raise ValueError(f"unsupported compression ratio {args.ratio}")
    with torch.device("meta"):
        weights = sum(p.numel() for p in VideoXLModel(cfg).parameters()) * _itemsize(dtype)
    plan = plan_request(sink, args.frames * cfg.tokens_per_frame, 64, 1024, cfg.beacon.window, [args.ratio])
    need = budget(cfg, plan.capacity, plan.max_window_rows, weights, _itemsize(dtype), 16)
    llm, vis = cfg.llm, cfg.vision
    summary = {
        "checkpoint": str(folder),
        "llm": {"hidden": llm.hidden_size, "layers": llm.num_layers, "heads": llm.num_heads,
                "kv_heads": llm.num_kv_heads, "head_dim": llm.head_dim, "mlp": llm.intermediate_size,
                "vocab": llm.vocab_size, "rope_theta": llm.rope_theta},
        "vision": {"hidden": vis.hidden_size, "layers": vis.num_layers, "heads": vis.num_heads,
                   "select_layer": vis.select_layer, "image_size": vis.image_size, "source": vis.source},
        "tokens_per_frame": cfg.tokens_per_frame, "window": cfg.beacon.window,
        "config_ratios": list(cfg.beacon.ratios), "eos_token_ids": list(cfg.eos_token_ids),
        "plan": {"frames": args.frames, "ratio": args.ratio, "dtype": str(dtype), "windows": len(plan.windows),
                 "vsts": plan.num_vsts, "question_tokens": 64, "max_new_tokens": 1024, **need.as_dict()},
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    p = summary["plan"]
    print(f"{folder}\n"
          f"  LLM    Qwen2 {llm.num_layers} layers, hidden {llm.hidden_size}, {llm.num_heads}/{llm.num_kv_heads} "
          f"heads of {llm.head_dim}, MLP {llm.intermediate_size}, vocab {llm.vocab_size}\n"
          f"  vision CLIP {vis.num_layers} layers (uses {vis.layers_to_run}), hidden {vis.hidden_size}, "
          f"{vis.num_heads} heads, {vis.image_size}px ({vis.source})\n"
          f"  VSTs   window {cfg.beacon.window} tokens = {cfg.beacon.window // cfg.tokens_per_frame} frames, "
          f"config ratios {list(cfg.beacon.ratios)}\n"
          f"memory plan: {args.frames} frames at ratio {args.ratio} in {dtype} "
          f"({p['windows']} windows, {p['vsts']} VSTs, 64-token question, 1024 new tokens)\n"
          f"  weights   {need.weights / GIB:8.2f} GiB\n"
          f"  KV cache  {need.kv_cache / GIB:8.2f} GiB ({need.kv_slots} slots)\n"
          f"  scratch   {need.scratch / GIB:8.2f} GiB\n"
          f"  workspace {need.workspace / GIB:8.2f} GiB\n"
          f"  total     {need.total / GIB:8.2f} GiB")
    return 0


def _demo(args) -> int:
    from .demo import ensure_demo
    from .engine import VideoXL

    model_path, video = ensure_demo(args.dir)
    _say(args, "demo: a tiny checkpoint with RANDOM weights, so the answer is nonsense words; "
               "the pipeline and its numbers are real.")
    model = VideoXL.from_pretrained(model_path, device=args.device, dtype=args.dtype)
    memory = _memory(args, model, str(video))
    _say(args, _describe(memory))
    _answer(args, model, memory, args.question)
    return 0
