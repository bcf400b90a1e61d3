"""Start a vxl_fast server in a thread on 127.0.0.1 for a test, and small helpers to talk to it."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import torch

from conftest import GOLDEN

VIDEO = GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4"
NAME = "tiny-videoxl"
_MODEL = []


def server_model():
    """A model instance of its own for the servers (the tests' ``tiny_model`` computes the
    expected answers on the test thread while a server's device thread runs)."""
    from vxl_fast import VideoXL

    if not _MODEL:
        _MODEL.append(VideoXL.from_pretrained(GOLDEN / "tiny-videoxl", device="cpu", dtype=torch.float32))
    return _MODEL[0]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app, graceful_timeout: float = 30.0, start_timeout: float = 60.0):
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=graceful_timeout)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    @property
    def service(self):
        return self.app.state.service

    def client(self, timeout: float = 120.0):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=timeout)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()

    def metric(self, name: str, **labels) -> float:
        """A value from ``GET /metrics`` (0 when the series is absent)."""
        import httpx

        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series == want:
                return float(value)
        return 0.0

    def wait_idle(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.service.worker.admitted == 0 and self.service.worker.running == 0, timeout,
                   "the server to become idle")


def wait_until(condition, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``condition`` at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def video_url(path: Path = VIDEO) -> str:
    return data_url(Path(path).read_bytes(), "video/mp4")


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def image(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def video_message(text: str, url: str | None = None) -> dict:
    return {"role": "user", "content": [{"type": "video_url", "video_url": {"url": url or video_url()}},
                                        {"type": "text", "text": text}]}
