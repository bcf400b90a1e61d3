"""Turn pytest-benchmark JSON files into the README's tables (markdown) and a plot.

    python benchmarks/report.py results/*.json [--plot out.png]

A ``.jsonl`` file (benchmarks/conftest.py's VXL_BENCH_RECORDS, one case a line) is read too: its
cases with benchmark statistics go into the tables; from all its lines come two more tables, the
runner's choices and versions per group of model cases (a silent fall to a slower backend shows
there), and the cases that failed or were skipped, with the stage that failed and why.

The plot needs matplotlib (optional): memory and time to first token against frames, engine
against reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict


def load(paths: list[str]) -> tuple[list[dict], list[dict], list[dict], list[dict], list[dict]]:
    e2e, op_rows, video, vision, decoding = [], [], [], [], []
    for path in paths:
        if path.endswith(".jsonl"):
            benches = [b for b in map(json.loads, open(path)) if "extra_info" in b]
        else:
            benches = json.load(open(path))["benchmarks"]
        for bench in benches:
            info = bench["extra_info"]
            if "decode_frames_s" in info:
                decoding.append(info)
            elif "frames_s" in info:
                vision.append(info)
            elif "frames" in info and "path" in info:
                e2e.append(info)
            elif "op" in info:
                op_rows.append(info)
            elif "sampled_frames_s" in info:
                video.append(info)
    return e2e, op_rows, video, vision, decoding


def load_records(paths: list[str]) -> list[dict]:
    """Every line of the ``.jsonl`` files among ``paths``."""
    return [json.loads(line) for path in paths if path.endswith(".jsonl") for line in open(path) if line.strip()]


FACTS = ("device", "torch", "cuda", "cudnn", "config", "attention", "vst_projection", "kernel_mode",
         "kernels_disabled", "decode_mode")


def facts_table(records: list[dict]) -> str:
    """One row per distinct combination of ``FACTS`` over the model cases (records with ``attention``)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for r in records:
        if "attention" in r:
            key = tuple(", ".join(v) or "none" if isinstance(v := r.get(k), list) else v for k in FACTS)
            groups[key].append(r["test"])
    out = ["| cases | " + " | ".join(FACTS) + " |", "|---" * (len(FACTS) + 1) + "|"]
    for key, tests in groups.items():
        out.append(f"| {len(tests)} | " + " | ".join(_f(v, "") for v in key) + " |")
    return "\n".join(out)


def failures_table(records: list[dict]) -> str:
    out = ["| case | outcome | stage | reason |", "|---|---|---|---|"]
    for r in records:
        if r["outcome"] != "passed":
            reason = str(r.get("reason", "")).replace("|", "\\|").replace("\n", " ")
            out.append(f"| {r['test']} | {r['outcome']} | {r.get('stage') or '—'} | {reason} |")
    return "\n".join(out)


def _f(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def e2e_table(rows: list[dict]) -> str:
    ref = {(r["device"], r["config"], r["frames"], r["ratio"]): r for r in rows if r["path"] == "reference"}
    out = ["| device | config | frames | ratio | path (frames on) | peak GiB | planned GiB | reserved GiB (planned) | "
           "device used GiB (planned) | vision s | prefill s | "
           "prefill TFLOP/s | first token s | decode tok/s | speed-up (first token) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["device"], r["config"], r["frames"], -r["ratio"], r["path"],
                                         r.get("frames_on", "device"))):
        base = ref.get((r["device"], r["config"], r["frames"], r["ratio"]))
        speedup = base["ttft_s"] / r["ttft_s"] if base and r["path"] == "engine" else None
        out.append(f"| {r['device']} | {r['config']} | {r['frames']} | {r['ratio']} | "
                   f"{r['path']} ({r.get('frames_on', 'device')}) | "
                   f"{_f(r['peak_gib'], '.2f')} | {r['planned_gib']:.2f} | "
                   f"{_f(r.get('reserved_gib'), '.2f')} ({_f(r.get('planned_reserved_gib'), '.2f')}) | "
                   f"{_f(r.get('device_used_gib'), '.2f')} ({_f(r.get('planned_device_gib'), '.2f')}) | "
                   f"{r['vision_s']:.2f} | "
                   f"{r['prefill_s']:.2f} | {_f(r.get('prefill_tflops'), '.2f')} | {r['ttft_s']:.2f} | "
                   f"{r['decode_tok_s']:.0f} | {_f(speedup, '.2f')}{'×' if speedup else ''} |")
    return "\n".join(out)


def ops_table(rows: list[dict]) -> str:
    kernel = {(r["device"], r["op"], r["ratio"]): r for r in rows if r["path"] == "kernel"}
    out = ["| device | op (real model shapes, bf16) | ratio | path | µs | GB/s | fraction of bandwidth | kernel speed-up |",
           "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["device"], r["op"], -r["ratio"], r["path"])):
        k = kernel.get((r["device"], r["op"], r["ratio"]))
        speedup = f"{r['us'] / k['us']:.2f}×" if k and r["path"] == "reference" else ""
        out.append(f"| {r['device']} | {r['op']} | {r['ratio']} | {r['path']} | {r['us']:.1f} | {r['gb_s']:.1f} | "
                   f"{_f(r['bandwidth_fraction'], '.2f')} | {speedup} |")
    return "\n".join(out)


def vision_table(rows: list[dict]) -> str:
    ref = {(r["device"], r["config"], r["frames"]): r for r in rows if r["path"] == "reference"}
    out = ["| device | config | frames | path | seconds | frames/s | TFLOP/s | of measured matmul rate | "
           "peak GiB | speed-up vs reference |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["device"], r["config"], r["frames"], r["path"])):
        base = ref.get((r["device"], r["config"], r["frames"]))
        speedup = f"{base['seconds'] / r['seconds']:.2f}×" if base and base is not r else ""
        out.append(f"| {r['device']} | {r['config']} | {r['frames']} | {r['path']} | {r['seconds']:.3f} | "
                   f"{r['frames_s']:.0f} | {r['tflops']:.3g} | {r['matmul_fraction']:.0%} | "
                   f"{_f(r['peak_gib'], '.2f')} | {speedup} |")
    return "\n".join(out)


def video_table(rows: list[dict]) -> str:
    naive = {(r["device"], r["height"], r["num_frames"]): r for r in rows if r["strategy"] == "sequential"}
    out = ["| device | video | sampled frames | of total | strategy | seconds | sampled frames/s | "
           "video frames/s | speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["device"], r["height"], r["num_frames"], r["strategy"])):
        base = naive.get((r["device"], r["height"], r["num_frames"]))
        speedup = f"{r['sampled_frames_s'] / base['sampled_frames_s']:.2f}×" if base and base is not r else ""
        out.append(f"| {r['device']} | {r['height']}p | {r['num_frames']} | {r['total_frames']} | {r['strategy']} | "
                   f"{r['num_frames'] / r['sampled_frames_s']:.2f} | {r['sampled_frames_s']:.0f} | "
                   f"{r['video_frames_s']:.0f} | {speedup} |")
    return "\n".join(out)


def decoding_table(rows: list[dict]) -> str:
    out = ["| device | input | decoder | on GPU | frames | seconds | frames/s | frames per CPU-second |",
           "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["device"], r["input"], r["on_gpu"], r["decoder"])):
        out.append(f"| {r['device']} | {r['input']} | {r['decoder']} | {'yes' if r['on_gpu'] else 'no'} | "
                   f"{r['decoded_frames']} | {r['decoded_frames'] / r['decode_frames_s']:.2f} | "
                   f"{r['decode_frames_s']:.1f} | {r['decode_frames_per_cpu_s']:.1f} |")
    return "\n".join(out)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(list)
    for r in rows:
        series[(r["path"], r["ratio"])].append(r)
    fig, (mem, ttft) = plt.subplots(1, 2, figsize=(11, 4))
    for (kind, ratio), pts in sorted(series.items()):
        pts.sort(key=lambda r: r["frames"])
        xs = [r["frames"] for r in pts]
        mem.plot(xs, [r["peak_gib"] if r["peak_gib"] is not None else r["planned_gib"] for r in pts],
                 marker="o", label=f"{kind}, ratio {ratio}")
        ttft.plot(xs, [r["ttft_s"] for r in pts], marker="o", label=f"{kind}, ratio {ratio}")
    mem.set(xlabel="frames", ylabel="peak memory, GiB (planned on CPU)", xscale="log")
    ttft.set(xlabel="frames", ylabel="time to first token, s", xscale="log", yscale="log")
    ttft.legend()
    fig.suptitle(f"{rows[0]['device']}, {rows[0]['config']} configuration, {rows[0]['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+")
    parser.add_argument("--plot", help="write a PNG plot of the end-to-end records")
    args = parser.parse_args()
    e2e, op_rows, video, vision, decoding = load(args.json)
    for title, table, rows in (("End to end", e2e_table, e2e), ("Vision", vision_table, vision),
                               ("Ops", ops_table, op_rows), ("Video sampling", video_table, video),
                               ("Decoding", decoding_table, decoding)):
        if rows:
            print(f"#### {title}\n\n{table(rows)}\n")
    records = load_records(args.json)
    if any("attention" in r for r in records):
        print(f"#### Runner and versions\n\n{facts_table(records)}\n")
    if any(r["outcome"] != "passed" for r in records):
        print(f"#### Failed or skipped\n\n{failures_table(records)}\n")
    if args.plot and e2e:
        try:
            plot(e2e, args.plot)
        except ImportError:
            print("no plot: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)


if __name__ == "__main__":
    main()
