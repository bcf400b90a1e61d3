"""``vxl-fast``: run Video-XL from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from .config import EXTENDED_RATIOS, SUPPORTED_RATIOS
from .errors import MemoryPlanError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vxl-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="answer a question about the bundled sample video with a tiny "
                                       "random checkpoint (created offline on first use)")
    demo.add_argument("question", nargs="?", default="What happens in this video?")
    demo.add_argument("--dir", help="where to create the demo files (default ~/.cache/vxl_fast/demo)")
    _common(demo, default_frames=32)

    ask = sub.add_parser("ask", help="answer a question about a video file")
    ask.add_argument("video")
    ask.add_argument("question")
    ask.add_argument("--model", required=True, help="checkpoint folder (or hub id when online)")
    _common(ask, default_frames=128)

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import ensure_demo
            model_path, video = ensure_demo(args.dir)
            if not args.quiet and not args.json:
                print("demo: a tiny checkpoint with RANDOM weights, so the answer is nonsense words; "
                      "the numbers below are real.", file=sys.stderr)
        else:
            model_path, video = args.model, args.video
        return _answer(args, model_path, video)
    except (ValueError, TypeError, FileNotFoundError, ImportError, MemoryPlanError) as e:
        print(f"vxl-fast: error: {e}", file=sys.stderr)
        return 2


def _common(p: argparse.ArgumentParser, default_frames: int) -> None:
    p.add_argument("--frames", type=int, default=default_frames, help="frames sampled uniformly")
    p.add_argument("--ratio", type=int, default=8,
                   help=f"compression ratio: {', '.join(map(str, SUPPORTED_RATIOS + EXTENDED_RATIOS))}")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _answer(args, model_path, video) -> int:
    from .engine import VideoXL

    model = VideoXL.from_pretrained(model_path, device=args.device, dtype=args.dtype)
    out = model.generate(video=video, num_frames=args.frames, prompt=args.question,
                         compression_ratio=args.ratio, max_new_tokens=args.max_new_tokens,
                         progress=not args.quiet and not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps({"text": out.text, "token_ids": out.token_ids,
                          "finish_reason": out.finish_reason, "stats": out.stats}))
        return 0
    print(out.text)
    s = out.stats
    print(f"\n{s['frames']} frames -> {s['visual_tokens']} visual tokens -> {s['windows']} windows -> "
          f"{s['vsts']} VSTs kept (ratio {args.ratio}); KV {s['kv_slots']} slots, "
          f"{s['kv_bytes'] / 2**20:.2f} MiB\n"
          f"vision {s['vision_s']:.2f} s, prefill {s['prefill_s']:.2f} s, first token "
          f"{s['ttft_s']:.2f} s, decode {s['decode_tok_s']:.1f} tok/s ({s['generated_tokens']} tokens)",
          file=sys.stderr)
    return 0
