"""A compressed video: the kept KV of its sink and VSTs, reusable for any number of questions."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .kv import KVCache, WindowScratch
from .plan import VisualWindow

if TYPE_CHECKING:
    from ..engine import VideoXL

FORMAT = "vxl_fast.VideoMemory/1"


@dataclass
class VideoMemory:
    """The compressed memory of one video (or image), made by :meth:`VideoXL.encode`.

    ``cache`` holds the kept K/V — the prompt text before the video (the sink) and every
    window's VSTs — in its first ``cache.length`` slots; questions write their K/V after those
    slots and leave them untouched. Frames fed with :meth:`append` are compressed window by window;
    an incomplete last window waits in ``pending`` until it fills or :meth:`flush` is called.
    Not thread-safe: one question at a time.
    """

    model: "VideoXL"
    cache: KVCache
    scratch: WindowScratch
    prefix_text: str  # the prompt text before the visual input
    prefix_ids: list[int]
    ratios: tuple[int, ...]
    modality: str  # "video" or "image"
    windows: list[VisualWindow] = field(default_factory=list)
    pending: torch.Tensor | None = None  # [n, D] visual tokens of the incomplete window
    frames: int = 0  # frames (or image tiles) ingested
    timestamps: list[float] | None = None  # seconds, one per frame, when known
    stats: dict = field(default_factory=lambda: {"vision_s": 0.0, "compress_s": 0.0})
    trace: list | None = None

    @property
    def num_vsts(self) -> int:
        return sum(w.n_vst for w in self.windows)

    @property
    def visual_tokens(self) -> int:
        return sum(w.n_raw for w in self.windows) + self.pending_tokens

    @property
    def pending_tokens(self) -> int:
        return 0 if self.pending is None else self.pending.shape[0]

    @property
    def carry(self) -> int:
        return self.windows[-1].next_carry if self.windows else 0

    @property
    def kv_slots(self) -> int:
        return self.cache.length

    def append(self, frames, timestamps: list[float] | None = None, progress: bool = False) -> "VideoMemory":
        """Add frames (uint8 [T, H, W, 3]); every window they complete is compressed now."""
        self.model._append(self, frames, timestamps, progress)
        return self

    def flush(self) -> "VideoMemory":
        """Compress the incomplete last window (the end of the video)."""
        self.model._flush(self)
        return self

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the memory (safetensors + JSON metadata). Atomic: a temp file renamed into place,
        so an interrupted save never leaves a half-written file at ``path``."""
        path = Path(path)
        n = self.cache.length
        tensors = {"k": self.cache.k[:, :, :n].contiguous().cpu(), "v": self.cache.v[:, :, :n].contiguous().cpu()}
        if self.pending is not None:
            tensors["pending"] = self.pending.contiguous().cpu()
        meta = {
            "format": FORMAT, "fingerprint": self.model.fingerprint, "dtype": str(self.model.dtype),
            "prefix_text": self.prefix_text, "prefix_ids": self.prefix_ids, "ratios": list(self.ratios),
            "modality": self.modality, "frames": self.frames, "timestamps": self.timestamps,
            "windows": [asdict(w) for w in self.windows], "stats": self.stats, "kv_slots": n,
        }
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"vxl_fast": json.dumps(meta)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model: "VideoXL", compression_ratio: int | None = None,
             reserve_tokens: int = 2048) -> "VideoMemory":
        """Read a memory written by :meth:`save` for ``model`` (same checkpoint and dtype).

        ``compression_ratio``, when given, must be the one the memory was encoded with."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"memory file not found: {path}")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                raw = (f.metadata() or {}).get("vxl_fast")
                if raw is None:
                    raise ValueError(f"{path} is not a vxl_fast memory file")
                meta = json.loads(raw)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except ValueError:
            raise
        except Exception as e:  # safetensors reports truncation/corruption with its own types
            raise ValueError(f"memory file {path} is truncated or corrupt: {e}") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta["fingerprint"] != model.fingerprint:
            raise ValueError(f"memory file {path} was made with another checkpoint "
                             f"({meta['fingerprint'][:12]}…, this model is {model.fingerprint[:12]}…)")
        if meta["dtype"] != str(model.dtype):
            raise ValueError(f"memory file {path} holds {meta['dtype']} K/V but the model runs in "
                             f"{model.dtype}; load the model with that dtype")
        if compression_ratio is not None and [compression_ratio] != meta["ratios"]:
            raise ValueError(f"memory file {path} was encoded at compression ratio "
                             f"{'/'.join(map(str, meta['ratios']))}, not {compression_ratio}")
        k, v = tensors.get("k"), tensors.get("v")
        n = meta["kv_slots"]
        if k is None or v is None:
            raise ValueError(f"memory file {path} is corrupt: it has no K/V tensors")
        if k.shape[2] != n or v.shape != k.shape:
            raise ValueError(f"memory file {path} is corrupt: K/V shapes {list(k.shape)}, {list(v.shape)} "
                             f"for {n} slots")
        if model._tokenize_prefix(meta["prefix_text"]) != meta["prefix_ids"]:
            raise ValueError(f"memory file {path}: the tokenizer gives other ids for its prompt prefix")
        memory = model._new_memory(meta["prefix_text"], meta["prefix_ids"], tuple(meta["ratios"]),
                                   meta["modality"], capacity=n + reserve_tokens, trace=False)
        memory.cache.k[:, :, :n] = k.to(model.device)
        memory.cache.v[:, :, :n] = v.to(model.device)
        memory.cache.length = n
        memory.windows = [VisualWindow(**w) for w in meta["windows"]]
        memory.pending = tensors["pending"].to(model.device) if "pending" in tensors else None
        memory.frames, memory.timestamps, memory.stats = meta["frames"], meta["timestamps"], meta["stats"]
        return memory
