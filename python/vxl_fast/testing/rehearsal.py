"""Rehearse a request on a device this machine does not have: the whole code path runs on fake
tensors (shapes, dtypes, devices — no data, no device) under PyTorch's ``FakeTensorMode``.

It proves the path runs end to end for that device (every device-dependent branch, no host
tensor mixed in), counts the aten ops of a window layer and of a decode step, and tracks the
bytes of every live tensor as a simulated peak to hold against the memory planner. The custom
ops are dispatched as the device build would (their fake kernels stand in for the CUDA ones),
and attention goes through the backend named (on a real device the runner picks it by a timed
check, which fake tensors cannot run), so what is counted is what the real run executes — a
math-attention fallback would show as its score matrices.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from dataclasses import dataclass, field
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..config import VideoXLConfig
from ..engine import answer as answering
from ..loader import tiny_tokenizer
from ..models.videoxl import VideoXLModel, set_parameters
from ..prompt import build_prompt, tokenize_prompt
from ..runtime import RuntimeOptions

GIB = 2 ** 30


@dataclass
class Rehearsal:
    """What a rehearsed request did."""

    frames: int
    ratio: int
    device: str
    dtype: str
    attention: str
    windows: int
    vsts: int
    vision_batch: int  # frames per vision-tower call
    planned_bytes: int  # the memory planner's total (weights included), plus the input frames on the device
    peak_bytes: int  # the largest sum of live device tensor bytes seen
    encode_waits: int  # times the host waited for the device while encoding (syncs, event waits)
    uploads: int  # host→device frame copies on the copy stream, each waited for by the compute stream
    ops_per_window_layer: Counter = field(default_factory=Counter)
    ops_per_decode_step: Counter = field(default_factory=Counter)
    ops_total: Counter = field(default_factory=Counter)

    @property
    def peak_over_plan(self) -> float:
        return self.peak_bytes / self.planned_bytes

    def as_dict(self) -> dict:
        return {"frames": self.frames, "ratio": self.ratio, "device": self.device, "dtype": self.dtype,
                "attention": self.attention, "windows": self.windows, "vsts": self.vsts,
                "vision_batch": self.vision_batch, "encode_waits": self.encode_waits, "uploads": self.uploads,
                "planned_gib": self.planned_bytes / GIB,
                "simulated_peak_gib": self.peak_bytes / GIB, "peak_over_plan": self.peak_over_plan,
                "ops_per_window_layer": dict(self.ops_per_window_layer),
                "ops_per_decode_step": dict(self.ops_per_decode_step)}


class _LiveBytes(TorchDispatchMode):
    """Counts aten ops and the device bytes of the storages their outputs live in, freed when
    collected (host tensors, e.g. frames streamed from host memory, are not device memory)."""

    def __init__(self):
        super().__init__()
        self.now = self.peak = 0
        self.ops: Counter = Counter()
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops[func.overloadpacket.__name__] += 1
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type not in ("meta", "cpu"):  # meta: the modules' blueprint
                self._track(t.untyped_storage())
        return out

    def _track(self, storage) -> None:
        key = storage._cdata
        if key in self._sizes:
            return
        self._sizes[key] = storage.nbytes()
        self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.now -= self._sizes.pop(key)


def rehearse(num_frames: int, compression_ratio: int = 16, decode_steps: int = 32,
             config: VideoXLConfig | None = None, device: str = "cuda", dtype: torch.dtype = torch.bfloat16,
             question: str = "Describe what happens in this video.", free_bytes: int = 80 * GIB,
             tokenizer=None, attention: str = "prefix", frames_on: str = "device") -> Rehearsal:
    """Run encode → question prefill → ``decode_steps`` decode steps of the released model (or
    ``config``) on fake ``device`` tensors with the ``attention`` backend; ``free_bytes`` is the
    device memory the planner sees. The frames start in ``device`` memory, or on the "host" (a
    real uint8 tensor, uploaded a vision batch at a time; the planned bytes then leave them out)."""
    from ..api import VideoXL

    cfg = config or VideoXLConfig.released()
    if tokenizer is None:
        tokenizer = tiny_tokenizer()
    dev = torch.device(device)
    track = _LiveBytes()
    waits, streams = Counter(), Counter()
    # NOTE: the choices a real device makes by timing are named here; the compiled kernels run
    # unchecked (their fake kernels under FakeTensorMode); a graph cannot be captured on fake tensors
    runtime = RuntimeOptions(attention=attention, vst_projection="gather", cuda_graphs=False, kernels="trust")
    with _pretend_device(dev, free_bytes, waits, streams), FakeTensorMode(allow_non_fake_inputs=True), track:
        model = VideoXL(cfg, _fake_weights(cfg, dev, dtype), tokenizer, dev, dtype, runtime=runtime)
        tok = tokenize_prompt(tokenizer, build_prompt(question))
        plan = model.memory_plan(num_frames, compression_ratio, len(tok.after), decode_steps + 1)
        if frames_on not in ("device", "host"):
            raise ValueError(f"frames_on={frames_on!r}; choose 'device' or 'host'")
        frames = torch.empty((num_frames, 336, 336, 3), dtype=torch.uint8,
                             device=dev if frames_on == "device" else "cpu")
        windows_ops: list[Counter] = []
        model.runner.run_visual = _counting(model.runner.run_visual, track, windows_ops)
        waits.clear()
        memory = model.encode(frames=frames, compression_ratio=compression_ratio,
                              reserve_tokens=len(tok.after) + decode_steps + 1)
        encode_waits = sum(waits.values())
        cache, _, _ = answering.prefill(model.runner, memory.state, tok.after, decode_steps + 1, None)
        before = Counter(track.ops)
        with model.runner.session():
            for _ in range(decode_steps):
                model.runner.decode(cache, 0)
        decode_ops = track.ops - before
    windows = len(memory.windows)
    return Rehearsal(
        frames=num_frames, ratio=compression_ratio, device=str(dev), dtype=str(dtype).removeprefix("torch."),
        attention=attention, windows=windows, vsts=memory.num_vsts,
        planned_bytes=plan.total + (frames.nbytes if frames_on == "device" else 0), peak_bytes=track.peak,
        encode_waits=encode_waits, uploads=streams["compute waits for copy"], vision_batch=model.runner.vision_batch,
        ops_per_window_layer=_per(windows_ops[0], cfg.llm.num_layers),
        ops_per_decode_step=_per(decode_ops, decode_steps), ops_total=Counter(track.ops))


def _fake_weights(cfg: VideoXLConfig, device: torch.device, dtype: torch.dtype) -> VideoXLModel:
    """The model's modules with (fake) parameters on ``device``: shapes and bytes of real weights."""
    with torch.device("meta"):
        model = VideoXLModel(cfg)
    set_parameters(model, lambda name, param: torch.empty(param.shape, device=device, dtype=dtype))
    return model.eval()


class _Event:
    """A CUDA event on the fake device: records nothing; waiting on it is counted."""

    def __init__(self, waits: Counter, **kwargs):
        self._waits = waits

    def record(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        self._waits["event.synchronize"] += 1

    def elapsed_time(self, other: "_Event") -> float:
        return 0.0


class _Stream:
    """A CUDA stream on the fake device: one stream waiting for another is counted in ``streams``,
    the host waiting for it in ``waits``."""

    def __init__(self, name: str, waits: Counter, streams: Counter):
        self.name, self._waits, self._streams = name, waits, streams

    def wait_stream(self, other: "_Stream") -> None:
        self._streams[f"{self.name} waits for {other.name}"] += 1

    def synchronize(self) -> None:
        self._waits["stream.synchronize"] += 1


@contextlib.contextmanager
def _pretend_device(device: torch.device, free_bytes: int, waits: Counter, streams: Counter):
    """What the code asks of a real device, answered for the fake one: free memory, syncs and
    event waits (counted in ``waits``), streams (``_Stream``; host memory counts as pinned). No
    tensor is kept as a real constant (a one-token tensor would otherwise be copied to the real
    device)."""
    def synchronize(*args, **kwargs):
        waits["synchronize"] += 1
    compute = _Stream("compute", waits, streams)
    with mock.patch("vxl_fast.memory.budget.available_bytes", lambda d: free_bytes), \
            mock.patch("torch.cuda.synchronize", synchronize), \
            mock.patch("torch.cuda.Event", lambda **kw: _Event(waits, **kw)), \
            mock.patch("torch.cuda.Stream", lambda *a, **kw: _Stream("copy", waits, streams)), \
            mock.patch("torch.cuda.current_stream", lambda *a, **kw: compute), \
            mock.patch("torch.cuda.stream", lambda stream: contextlib.nullcontext()), \
            mock.patch.object(torch.Tensor, "is_pinned", lambda self, *a: True), \
            mock.patch.object(torch.Tensor, "record_stream", lambda self, stream: None), \
            mock.patch("torch._subclasses.fake_tensor.CONSTANT_NUMEL_LIMIT", 0):
        yield


def _counting(run_visual, track: _LiveBytes, out: list[Counter]):
    """``run_visual`` recording the ops of each window it runs."""
    def run(*args, **kwargs):
        before = Counter(track.ops)
        run_visual(*args, **kwargs)
        out.append(track.ops - before)
    return run


def _per(counts: Counter, n: int) -> Counter:
    return Counter({k: round(v / n, 2) for k, v in counts.items()}) if n else Counter()
