"""Evaluation throughput: questions per second of a multi-question task with and without the
encode-once grouping (``vxl_fast.eval.session``), and the windows a needle-in-a-haystack grid
compresses with and without prefix reuse (``vxl_fast.eval.niah``), each pair in the same run.

Tiny and medium configurations on the CPU (``VXL_BENCH_CONFIG``); the full one on a GPU.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from conftest import CONFIG, environment, runner_facts
from vxl_fast.eval import niah
from vxl_fast.eval.session import Evaluator, Item, Sampling, generation_options

FULL = CONFIG == "full"
FRAMES = 128 if FULL else 10  # frames per video (the reference wrapper's 128 on the full model)
VIDEOS, QUESTIONS = (4, 8) if FULL else (2, 4)
NIAH_FRAMES, NIAH_DEPTHS = ([256, 512], [0, 25, 50, 75, 100]) if FULL else ([20, 40], [0, 25, 50, 75, 100])
RATIO = 16 if FULL else 4


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    av = pytest.importorskip("av", reason="the task's videos are written with PyAV")
    folder = tmp_path_factory.mktemp("eval-videos")
    paths = []
    for v in range(VIDEOS):
        rng = np.random.default_rng(v)
        path = folder / f"v{v}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=8)
            stream.width = stream.height = 96
            stream.pix_fmt = "yuv420p"
            for _ in range(FRAMES):
                frame = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        paths.append(str(path))
    return paths


_answers: dict[str, list[str]] = {}


@pytest.mark.parametrize("mode", ["grouped", "per-request"])
def test_questions_per_second(benchmark, bench_model, videos, mode):
    options = generation_options({"max_new_tokens": 8, "temperature": 0}, 8, 0)
    items = [Item([v], f"Question {q}: what happens around moment {q}?", options) for v in videos
             for q in range(QUESTIONS)]
    evaluator = Evaluator(bench_model, Sampling(num_frames=FRAMES, compression_ratio=RATIO), group=mode == "grouped")
    answers = benchmark.pedantic(lambda: evaluator.generate(items), rounds=1, iterations=1)
    _answers[mode] = answers
    if len(_answers) == 2:
        assert _answers["grouped"] == _answers["per-request"]
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update({**environment(), **runner_facts(bench_model), "mode": mode, "videos": VIDEOS,
                                 "questions": len(items), "frames": FRAMES, "ratio": RATIO,
                                 "encodes": evaluator.encodes, "questions_per_s": len(items) / seconds})


def test_niah_windows(benchmark, bench_model):
    size = 336 if FULL else 64
    g = torch.Generator().manual_seed(0)
    haystacks = {n: torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g) for n in NIAH_FRAMES}
    needle = niah.Needle(torch.full((1, size, size, 3), 230, dtype=torch.uint8), "What color is the flash?",
                         ("red", "white", "blue", "green"), "B")
    t0 = time.perf_counter()
    whole = niah.run(bench_model, haystacks, needle, NIAH_DEPTHS, RATIO, max_new_tokens=4, reuse=False)
    whole_s = time.perf_counter() - t0
    reused = benchmark.pedantic(lambda: niah.run(bench_model, haystacks, needle, NIAH_DEPTHS, RATIO,
                                                 max_new_tokens=4), rounds=1, iterations=1)
    assert [c.answer for c in reused.cells] == [c.answer for c in whole.cells]
    assert reused.windows_naive == whole.windows_encoded
    benchmark.extra_info.update({**environment(), **runner_facts(bench_model), "frames": NIAH_FRAMES,
                                 "depths": NIAH_DEPTHS, "ratio": RATIO, "windows_reuse": reused.windows_encoded,
                                 "windows_whole": whole.windows_encoded, "seconds_reuse": benchmark.stats.stats.median,
                                 "seconds_whole": whole_s})
