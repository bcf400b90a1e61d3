"""``vxl-fast niah``: the needle-in-a-haystack grid of a checkpoint, as JSON and a heatmap.

  vxl-fast niah --model PATH --haystack long.mp4 --needle needle.png \\
      --question "What is written on the sign?" --option cat --option dog --option bird --answer B \\
      --frames 128 256 512 1024 2048 --depths 0 25 50 75 100 --ratio 16 -o niah/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..runtime import default_model


def add_parser(sub) -> argparse.ArgumentParser:
    """The ``niah`` subcommand of ``vxl-fast``."""
    p = sub.add_parser("niah", help="needle-in-a-haystack accuracy grid (JSON) and heatmap (PNG)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model(), help="checkpoint folder or hub id (default: $VXL_FAST_MODEL)")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on cuda)")
    p.add_argument("--haystack", required=True, help="the haystack video")
    p.add_argument("--needle", required=True, help="the needle: an image, or a short clip")
    p.add_argument("--needle-frames", type=int, default=1, help="frames sampled from a needle clip (default: 1)")
    p.add_argument("--question", required=True, help="the question about the needle")
    p.add_argument("--option", action="append", required=True, help="an answer option (repeat; listed as (A), (B), ...)")
    p.add_argument("--answer", required=True, help="the correct option's letter")
    p.add_argument("--frames", type=int, nargs="+", required=True, help="haystack frame counts (e.g. 128 256 ... 2048)")
    p.add_argument("--depths", type=float, nargs="+", default=[0, 25, 50, 75, 100],
                   help="needle depths in percent (default: 0 25 50 75 100)")
    p.add_argument("--ratio", type=int, default=8, help="compression ratio, one for every window (default: 8)")
    p.add_argument("--max-new-tokens", type=int, default=8, help="answer length (default: 8)")
    p.add_argument("--no-reuse", action="store_true", help="encode every haystack whole (no prefix sharing)")
    p.add_argument("-o", "--out", required=True, help="folder for niah.json and niah.png")
    p.set_defaults(run=main)
    return p


def main(args) -> int:
    from ..memory.plan import parse_ratios
    from ..options import check_count
    from .niah import Needle, check_grid, check_options, run

    if not args.model:
        raise ValueError("give --model PATH (or set VXL_FAST_MODEL)")
    check_grid(args.frames, args.depths)
    check_options(args.option, args.answer.strip().upper())
    parse_ratios(args.ratio, ())
    check_count("--needle-frames", args.needle_frames, low=1)
    check_count("--max-new-tokens", args.max_new_tokens, low=1)
    for path in (args.haystack, args.needle):
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such file: {path}")
    from ..api import VideoXL
    from ..video import load_video

    haystacks = {n: load_video(args.haystack, num_frames=n).frames.cpu() for n in sorted(set(args.frames))}
    size = tuple(next(iter(haystacks.values())).shape[1:3])
    needle = Needle(needle_frames(args.needle, args.needle_frames, size), args.question, tuple(args.option),
                    args.answer.strip().upper())
    model = VideoXL.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    t0 = time.perf_counter()
    grid = run(model, haystacks, needle, args.depths, args.ratio, args.max_new_tokens, reuse=not args.no_reuse)
    seconds = time.perf_counter() - t0
    settings = {"model": str(args.model), "haystack": str(args.haystack), "needle": str(args.needle),
                "needle_frames": int(needle.frames.shape[0]), "question": args.question, "options": args.option,
                "answer": needle.answer, "compression_ratio": args.ratio, "max_new_tokens": args.max_new_tokens,
                "reuse": not args.no_reuse, "device": str(model.device), "dtype": str(model.dtype)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = to_json(grid, sorted(set(args.frames)), sorted(set(args.depths)), settings, seconds)
    (out / "niah.json").write_text(json.dumps(report, indent=2))
    heatmap(report, out / "niah.png")
    print(f"niah: accuracy {report['accuracy']:.3f}; windows encoded {grid.windows_encoded} "
          f"(encoding each haystack whole: {grid.windows_naive}); {out / 'niah.json'}, {out / 'niah.png'}",
          file=sys.stderr)
    return 0


def needle_frames(path: str, count: int, size: tuple[int, int]):
    """The needle as uint8 frames [k, H, W, 3] (a tensor) of the haystack's size ``size`` (H, W)."""
    import numpy as np
    import torch
    from PIL import Image

    from ..video.request import IMAGE_SUFFIXES

    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        images = [Image.open(path).convert("RGB")]
    else:
        from ..video import load_video

        images = [Image.fromarray(f.numpy()) for f in load_video(path, num_frames=count).frames.cpu()]
    return torch.from_numpy(np.stack([np.asarray(im.resize(size[::-1], Image.BICUBIC)) for im in images]))


def to_json(grid, frames: list[int], depths: list[float], settings: dict, seconds: float) -> dict:
    """The :class:`.niah.Grid` as JSON: accuracy[depth][frame count], every answer, the windows encoded."""
    return {"settings": settings, "frames": frames, "depths": depths,
            "accuracy_grid": [[grid.accuracy(n, d) for n in frames] for d in depths],
            "accuracy": sum(c.correct for c in grid.cells) / len(grid.cells),
            "cells": [vars(c) for c in grid.cells], "windows_encoded": grid.windows_encoded,
            "windows_naive": grid.windows_naive, "seconds": round(seconds, 3)}


def heatmap(report: dict, path: Path) -> None:
    """The paper's figure: depth (rows) × frame count (columns), red (wrong) to green (right),
    the settings written under it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the heatmap needs matplotlib: pip install 'vxl_fast[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    acc = np.array(report["accuracy_grid"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(report["frames"]) + 2), 0.5 * len(report["depths"]) + 3.2))
    im = ax.imshow(acc, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(report["frames"])), [str(n) for n in report["frames"]])
    ax.set_yticks(range(len(report["depths"])), [f"{d:g}%" for d in report["depths"]])
    ax.set_xlabel("frames")
    ax.set_ylabel("needle depth")
    for (i, j), value in np.ndenumerate(acc):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="accuracy")
    s = report["settings"]
    ax.set_title(f"V-NIAH: accuracy {report['accuracy']:.3f}", fontsize=11)
    fig.text(0.01, 0.01, f"Q: {s['question'][:90]} · options {len(s['options'])}\n"
             f"model {s['model']} · ratio {s['compression_ratio']} · {s['dtype']} on {s['device']}\n"
             f"needle {Path(s['needle']).name} ({s['needle_frames']} frame(s)) · answer {s['answer']} · "
             f"windows {report['windows_encoded']} (whole: {report['windows_naive']})", fontsize=7, va="bottom")
    fig.subplots_adjust(bottom=0.28)
    fig.savefig(path, dpi=120)
    plt.close(fig)
