"""A local Ray cluster on the loopback address for the distributed tests, what its processes
listen on, and small videos to feed it."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN

from vxl_fast.distributed.cluster import import_ray

CHECKPOINT = GOLDEN / "tiny-videoxl"
VIDEO = GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4"


def ray_or_skip():
    """Ray, imported so that a local cluster stays on the loopback address; skip without it."""
    try:
        return import_ray()
    except ImportError:
        pytest.skip("needs Ray: pip install 'vxl_fast[ray]'", allow_module_level=True)


@contextlib.contextmanager
def local_cluster(num_cpus: int = 2):
    """Ray on this machine, bound to 127.0.0.1 (the issue's command line); shut down after."""
    ray = import_ray()  # before any other import of ray: keeps the node address on loopback
    ray.init(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def descendants(root: int | None = None) -> set[int]:
    """This process and every process started under it (Ray's GCS, raylet, agents, workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [root or os.getpid()]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def listening(pids: set[int]) -> list[tuple[str, str]]:
    """(process name, local address) of every TCP socket listening in ``pids`` (``ss -tlnp``)."""
    return [(name, local) for name, local, _ in _sockets(["-tlnp"], pids)]


def connections(pids: set[int]) -> list[tuple[str, str, str]]:
    """(process name, local address, peer address) of every established TCP connection in ``pids``."""
    return _sockets(["-tnp", "state", "established"], pids)


def _sockets(args: list[str], pids: set[int]) -> list[tuple[str, str, str]]:
    out = subprocess.run([shutil.which("ss"), "-H", *args], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        head, _, users = line.partition("users:")
        local, peer = [c for c in head.split() if ":" in c][:2]
        for name, pid in re.findall(r'\("([^"]+)",pid=(\d+),', users):
            if int(pid) in pids:
                found.append((name, local, peer))
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host.startswith("::ffff:"):
        host = host[len("::ffff:"):]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*" or "0.0.0.0" spelled otherwise: every interface
        return False


def processes(prefix: str, among: set[int]) -> list[int]:
    """Processes in ``among`` whose title starts with ``prefix`` (Ray titles a worker busy in a
    call ``ray::Class.method``)."""
    found = []
    for pid in among:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(prefix):
            found.append(pid)
    return found


def frame_folder(path: Path, frames: int, seed: int) -> Path:
    """A folder of PNG frames: a square crossing a coloured background (no PyAV needed)."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    for t in range(frames):
        img = np.empty((240, 320, 3), dtype=np.uint8)
        img[:] = (base + 8 * t) % 256
        x = 10 + t * 250 // max(frames, 1)
        img[90:150, x:x + 50] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(path / f"{t:04d}.png")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
