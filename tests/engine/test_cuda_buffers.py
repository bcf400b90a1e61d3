"""On a GPU: the compression loop allocates nothing new after its first window (the KV cache and
the VST stage are allocated before it; a window's transients reuse the allocator's cached blocks),
and the fused attention backend gives the masked reference's answer."""

from __future__ import annotations

import torch

from conftest import GOLDEN, needs_cuda

pytestmark = needs_cuda


def test_no_new_device_memory_after_the_first_window():
    from vxl_fast import VideoXL, VideoXLConfig

    model = VideoXL.random(VideoXLConfig.from_dir(GOLDEN / "medium-videoxl"), device="cuda", dtype="bfloat16")
    stats = []
    run_visual = model.runner.run_visual

    def spy(*args, **kwargs):
        run_visual(*args, **kwargs)
        torch.cuda.synchronize()
        s = torch.cuda.memory_stats()
        stats.append((s["segment.all.allocated"], s["reserved_bytes.all.peak"], s["allocated_bytes.all.peak"]))
    model.runner.run_visual = spy
    frames = torch.randint(0, 256, (60, 64, 64, 3), dtype=torch.uint8)
    model.encode(frames=frames, compression_ratio=16)
    assert len(stats) == 6
    assert len(set(stats[1:])) == 1, stats  # no cudaMalloc, no new peak after window 1
