"""Memory files: a :class:`MemoryState` as safetensors + JSON metadata, verified on load.

The metadata lists every tensor with its dtype, shape and the SHA-256 of its bytes, and the
metadata itself is covered by a SHA-256 stored beside it, so any flipped byte is found on load.
It may also record the memory's identity (``MemoryState.identity``: what it was made from), so that
a reader expecting one memory can tell a file made for another (files without one load as unknown).
Writing is atomic (a temporary file renamed into place) and the file follows the umask.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import MemoryFileError
from .plan import VisualWindow, parse_ratios
from .state import EncodeStats, MemoryState

FORMAT = "vxl_fast.VideoMemory/2"
# Metadata keys and the JSON types a valid file has for them.
_KEYS = {"format": str, "fingerprint": str, "dtype": str, "prefix_text": str, "prefix_ids": list,
         "ratios": list, "modality": str, "frames": int, "timestamps": (list, type(None)),
         "windows": list, "stats": dict, "kv_slots": int, "tensors": dict}
_WINDOW_KEYS = set(VisualWindow.__dataclass_fields__)


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` as a file we can create or replace: not a folder, in an existing, writable folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write the memory to {path}: it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"cannot write the memory to {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write the memory to {path}: permission denied")
    return path


def save_state(state: MemoryState, path: str | os.PathLike, fingerprint: str, dtype: torch.dtype) -> Path:
    """Write ``state`` (its kept slots and pending tokens) to ``path``."""
    path = check_writable(path)
    n = state.cache.length
    tensors = {"k": state.cache.k[:, :, :n].contiguous().cpu(), "v": state.cache.v[:, :, :n].contiguous().cpu()}
    if state.pending is not None:
        tensors["pending"] = state.pending.contiguous().cpu()
    meta = {"identity": state.identity,
        "format": FORMAT, "fingerprint": fingerprint, "dtype": str(dtype),
        "prefix_text": state.prefix_text, "prefix_ids": state.prefix_ids, "ratios": list(state.ratios),
        "modality": state.modality, "frames": state.frames, "timestamps": state.timestamps,
        "windows": [asdict(w) for w in state.windows], "stats": state.stats.as_dict(), "kv_slots": n,
        "tensors": {name: _describe(t) for name, t in tensors.items()},
    }
    text = json.dumps(meta)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"vxl_fast": text, "vxl_fast_sha256": _sha(text.encode())})
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors writes 0600, as mkstemp does
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_state_file(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The verified metadata and CPU tensors of a memory file (:class:`MemoryFileError` if not)."""
    path = Path(path)
    meta = read_header(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors reports truncation/corruption with its own types
        raise MemoryFileError(f"memory file {path} is truncated or corrupt: {e}") from None
    _check_meta(path, meta, tensors)
    return meta, tensors


def read_header(path: str | os.PathLike) -> dict:
    """The metadata of a memory file, its checksum and format verified, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"memory file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors reports truncation/corruption with its own types
        raise MemoryFileError(f"memory file {path} is truncated or corrupt: {e}") from None
    text = header.get("vxl_fast")
    if text is None:
        raise MemoryFileError(f"{path} is not a vxl_fast memory file")
    if header.get("vxl_fast_sha256") != _sha(text.encode()):
        raise MemoryFileError(f"memory file {path} is corrupt: its metadata checksum does not match")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise MemoryFileError(f"memory file {path} has metadata that is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise MemoryFileError(f"{path} has format {found!r}, expected {FORMAT!r}; encode the video again")
    return meta


def check_compatible(path: str | os.PathLike, meta: dict, dtype: torch.dtype,
                     compression_ratio: int | None = None) -> None:
    """A memory file's K/V dtype is the model's, and its ratio is ``compression_ratio`` (when given)."""
    if meta.get("dtype") != str(dtype):
        raise MemoryFileError(f"memory file {path} holds {meta.get('dtype')} K/V but the model runs in "
                              f"{dtype}; load the model with that dtype")
    if compression_ratio is not None and parse_ratios(compression_ratio, ()) != tuple(meta.get("ratios", ())):
        raise MemoryFileError(f"memory file {path} was encoded at compression ratio "
                              f"{'/'.join(map(str, meta.get('ratios', ())))}, not {compression_ratio}")


def identity_key(identity: dict) -> str:
    """A SHA-256 naming ``identity`` (JSON values; key order does not matter)."""
    return _sha(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode())


def restore_fields(meta: dict) -> dict:
    """The :class:`MemoryState` fields a verified file stores, besides its buffers."""
    return {"windows": [VisualWindow(**w) for w in meta["windows"]], "frames": meta["frames"],
            "timestamps": meta["timestamps"], "stats": EncodeStats(**meta["stats"])}


def _check_meta(path: Path, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    for key, typ in _KEYS.items():
        if key not in meta:
            raise MemoryFileError(f"memory file {path} is corrupt: its metadata has no {key!r}")
        if not isinstance(meta[key], typ) or isinstance(meta[key], bool):
            raise MemoryFileError(f"memory file {path} is corrupt: metadata {key!r} has the wrong type")
    for i, w in enumerate(meta["windows"]):
        if not isinstance(w, dict) or set(w) != _WINDOW_KEYS:
            raise MemoryFileError(f"memory file {path} is corrupt: window {i} is malformed")
    if not isinstance(meta.get("identity"), (dict, type(None))):
        raise MemoryFileError(f"memory file {path} is corrupt: metadata 'identity' has the wrong type")
    if set(meta["stats"]) != {"vision_s", "compress_s"}:
        raise MemoryFileError(f"memory file {path} is corrupt: metadata 'stats' is malformed")
    listed = meta["tensors"]
    if set(listed) != set(tensors) or not {"k", "v"} <= set(tensors):
        raise MemoryFileError(f"memory file {path} is corrupt: it holds tensors {sorted(tensors)}, "
                              f"its metadata lists {sorted(listed)}")
    for name, t in tensors.items():
        if _describe(t) != listed[name]:
            want = listed[name]
            if want.get("dtype") != str(t.dtype) or want.get("shape") != list(t.shape):
                raise MemoryFileError(
                    f"memory file {path} is corrupt: tensor {name!r} is {t.dtype} {list(t.shape)}, "
                    f"its metadata says {want.get('dtype')} {want.get('shape')}")
            raise MemoryFileError(f"memory file {path} is corrupt: tensor {name!r} fails its checksum")
    k, v = tensors["k"], tensors["v"]
    if k.dim() != 4 or k.shape[2] != meta["kv_slots"] or v.shape != k.shape:
        raise MemoryFileError(f"memory file {path} is corrupt: K/V shapes {list(k.shape)}, {list(v.shape)} "
                              f"for {meta['kv_slots']} slots")
    if str(k.dtype) != meta["dtype"] or str(v.dtype) != meta["dtype"]:
        raise MemoryFileError(f"memory file {path} is corrupt: K/V are {k.dtype}, its metadata says {meta['dtype']}")


def _describe(t: torch.Tensor) -> dict:
    return {"dtype": str(t.dtype), "shape": list(t.shape), "sha256": _sha(_bytes(t))}


def _bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    """The process umask, read without changing it (setting it, even for a moment, would race
    with other threads creating files); only where /proc is missing is it set and restored."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask
