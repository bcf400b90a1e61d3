"""A stand-in for NVIDIA DALI at vxl_fast's boundary: ``nvidia.dali``'s ``Pipeline`` (built,
fed with ``feed_input``, ``run``), ``fn.external_source``, ``fn.decoders.image`` (Pillow) and
``fn.decoders.video`` (PyAV's rgb24, zero frames past the end as DALI pads), ``types``. A
``mixed`` operator hands out torch tensors (DLPack), a ``cpu`` one arrays. Every pipeline and run
is recorded, so tests see the device, the options and the batches vxl_fast asked for."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import torch
from PIL import Image


class Node:
    def __init__(self, op: str, inputs: tuple = (), **kwargs):
        self.op, self.inputs, self.kwargs = op, inputs, kwargs


def _error(message: str) -> RuntimeError:
    return RuntimeError("Critical error in pipeline:\nError in CPU operator `nvidia.dali.fn.decoders.image`,\n"
                        f"encountered:\n\n{message}\nCurrent pipeline object is no longer valid.")


class Pipeline:
    built: list[dict] = []  # the constructor's arguments and the operator's, per built pipeline
    runs: list[dict] = []  # per run: the operator, its device, the batch size, the frames asked
    fail_build: Exception | None = None  # a broken install: build() raises it
    _current: "Pipeline | None" = None

    def __init__(self, batch_size, num_threads, device_id, prefetch_queue_depth):
        self.args = dict(batch_size=batch_size, num_threads=num_threads, device_id=device_id)
        self.fed: dict[str, list] = {}
        self.output: Node | None = None

    def __enter__(self):
        Pipeline._current = self
        return self

    def __exit__(self, *exc):
        Pipeline._current = None

    def set_outputs(self, node: Node):
        self.output = node

    def build(self):
        if Pipeline.fail_build is not None:
            raise Pipeline.fail_build
        Pipeline.built.append({**self.args, "op": self.output.op, **self.output.kwargs})

    def feed_input(self, name: str, data: list):
        assert len(data) <= self.args["batch_size"], "fed more samples than the batch size"
        self.fed[name] = data

    def run(self):
        node = self.output
        encoded = self.fed[node.inputs[0].kwargs["name"]]
        if node.op == "image":
            Pipeline.runs.append({"op": "image", "device": node.kwargs["device"], "batch": len(encoded)})
            out = [_image(e) for e in encoded]
        else:
            frames = self.fed[node.kwargs["frames"].kwargs["name"]][0].tolist()
            Pipeline.runs.append({"op": "video", "device": node.kwargs["device"], "frames": frames})
            out = [_video(encoded[0], frames)]
        return ([torch.from_numpy(o) for o in out] if node.kwargs["device"] == "mixed" else out),


def _image(encoded: np.ndarray) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(encoded.tobytes())) as im:
            return np.asarray(im.convert("RGB")).copy()
    except OSError:
        raise _error("nvImageCodec failure: '#4'") from None


def _video(encoded: np.ndarray, frames: list[int]) -> np.ndarray:
    import av

    with av.open(io.BytesIO(encoded.tobytes())) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    blank = np.zeros_like(decoded[0])
    return np.stack([decoded[i] if i < len(decoded) else blank for i in frames])


def install(monkeypatch) -> type[Pipeline]:
    """Puts the fake in ``sys.modules`` (``nvidia``, ``nvidia.dali``, its ``fn`` and ``types``)."""
    fn = types.SimpleNamespace(
        external_source=lambda name, dtype, ndim: Node("source", name=name),
        decoders=types.SimpleNamespace(
            image=lambda encoded, **kw: Node("image", (encoded,), **kw),
            video=lambda encoded, **kw: Node("video", (encoded,), **kw)))
    dali_types = types.SimpleNamespace(UINT8="uint8", INT32="int32", RGB="rgb")
    dali = types.ModuleType("nvidia.dali")
    dali.Pipeline, dali.fn, dali.types = Pipeline, fn, dali_types
    nvidia = types.ModuleType("nvidia")
    nvidia.dali = dali
    for name, module in (("nvidia", nvidia), ("nvidia.dali", dali), ("nvidia.dali.fn", fn),
                         ("nvidia.dali.types", dali_types)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(Pipeline, "built", [])
    monkeypatch.setattr(Pipeline, "runs", [])
    monkeypatch.setattr(Pipeline, "fail_build", None)
    return Pipeline
