"""Encoded memories kept for the next question about the same video: an LRU bounded in bytes on
the model's device, spilling evicted memories to files (``VideoMemory.save``) when a folder is
given, itself an LRU bounded in bytes (20 GiB unless told).

The folder may hold other files: the cache uses, and deletes, only the files it made — named
``vxl_fast-<key>.vxl`` and listed in its manifest (``vxl_fast-cache.json``); anything else is left
alone and reported. A memory is found by a key naming its identity (``MemoryCache.key``), and a
file is used only if it records that identity. When the folder cannot be written (read-only,
full), the cache goes on without spilling and says why in :meth:`MemoryCache.health`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

from ..memory.files import identity_key
from ..video_memory import VideoMemory

DEFAULT_DISK_BYTES = 20 * 2 ** 30
MANIFEST = "vxl_fast-cache.json"
_FORMAT = "vxl_fast.MemoryCache/1"
_KEY = re.compile(r"[0-9a-f]{64}")
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


class MemoryCache:
    """``key → VideoMemory``. Thread-safe. A memory larger than the whole device budget is not
    kept on the device (it goes straight to the folder, when there is one)."""

    def __init__(self, max_bytes: int, folder: str | os.PathLike | None = None,
                 max_disk_bytes: int = DEFAULT_DISK_BYTES):
        if max_bytes < 0:
            raise ValueError(f"the memory cache size must be >= 0 bytes, got {max_bytes}")
        if max_disk_bytes < 0:
            raise ValueError(f"the memory cache folder size must be >= 0 bytes, got {max_disk_bytes}")
        self.max_bytes, self.max_disk_bytes = max_bytes, max_disk_bytes
        self.folder = Path(folder) if folder is not None else None
        self._device: OrderedDict[str, VideoMemory] = OrderedDict()
        self._disk: OrderedDict[str, int] = OrderedDict()  # key -> file size, least recently used first
        self._lock = threading.RLock()
        self.evictions = 0
        self.rejected = 0  # files that did not hold the memory asked for
        self.strays: list[str] = []  # names in the folder the cache did not make (left alone)
        self.degraded: str | None = None  # why the folder is not written to, when it is not
        if self.folder is not None:
            self._open_folder()

    @staticmethod
    def key(identity: dict) -> str:
        """The key of the memory made from ``identity`` (JSON values)."""
        return identity_key(identity)

    def health(self) -> dict:
        """``{"status": "ok"}``, or ``"degraded"`` with the reason (it names no path)."""
        with self._lock:
            return {"status": "ok"} if self.degraded is None else {"status": "degraded", "reason": self.degraded}

    def get(self, key: str) -> VideoMemory | None:
        """The memory on the device, most recently used now; None when it is not there."""
        with self._lock:
            memory = self._device.get(key)
            if memory is not None:
                self._device.move_to_end(key)
            return memory

    def on_disk(self, key: str) -> bool:
        with self._lock:
            return key in self._disk

    def load(self, key: str, model, identity: dict) -> VideoMemory | None:
        """Bring a spilled memory back to the device (device work: call it from the model's worker).
        A file that does not load, or holds another memory than ``identity``'s, is dropped (a
        warning): None, as for a miss."""
        with self._lock:
            if key not in self._disk:
                return None
            self._disk.move_to_end(key)
            path = self._path(key)
        try:
            memory = VideoMemory.load(path, model, identity=identity)
        except (ValueError, OSError) as e:  # MemoryFileError is a ValueError
            warnings.warn(f"vxl_fast memory cache: {path.name} not used ({_reason(e, path)}); encoding again",
                          RuntimeWarning, stacklevel=2)
            with self._lock:
                self.rejected += 1
                self._drop_file(key)
                self._write_manifest()
            return None
        self.put(key, memory)
        return memory

    def put(self, key: str, memory: VideoMemory) -> None:
        """Keep ``memory``; evict the least recently used beyond the budget (to the folder, if any)."""
        with self._lock:
            self._device[key] = memory
            self._device.move_to_end(key)
            while self._device and self.nbytes > self.max_bytes:
                old, evicted = self._device.popitem(last=False)
                self.evictions += 1
                if self.folder is not None and self.degraded is None and old not in self._disk:
                    self._spill(old, evicted)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(m.cache.nbytes for m in self._device.values())

    @property
    def disk_nbytes(self) -> int:
        with self._lock:
            return sum(self._disk.values())

    def __len__(self) -> int:
        return len(self._device)

    @property
    def disk_entries(self) -> int:
        return len(self._disk)

    def clear(self) -> None:
        with self._lock:
            self._device.clear()

    # ------------------------------------------------------------------ the folder
    def _path(self, key: str) -> Path:
        assert self.folder is not None and _KEY.fullmatch(key), key
        return self.folder / f"vxl_fast-{key}.vxl"

    def _open_folder(self) -> None:
        """Create the folder, read the manifest, keep its entries that are still this cache's
        files; report the rest of the folder."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            names = sorted(os.listdir(self.folder))
        except OSError as e:
            self._degrade("the memory cache folder cannot be opened", e)
            return
        listed = self._read_manifest()
        for key in listed:
            size = _file_size(self._path(key))
            if size is not None:
                self._disk[key] = size
        ours = {self._path(k).name for k in self._disk} | {MANIFEST}
        self.strays = [n + (" (dangling link)" if not os.path.exists(self.folder / n) else "")
                       for n in names if n not in ours]
        if self.strays:
            shown = ", ".join(self.strays[:5]) + (", …" if len(self.strays) > 5 else "")
            warnings.warn(f"vxl_fast memory cache: {len(self.strays)} entries in {self.folder} were not made by it "
                          f"and are left alone: {shown}", RuntimeWarning, stacklevel=3)
        if not os.access(self.folder, os.W_OK | os.X_OK):
            self._degrade("the memory cache folder cannot be written", OSError(errno.EROFS, os.strerror(errno.EROFS)))
        elif len(self._disk) != len(listed):
            self._write_manifest()

    def _read_manifest(self) -> list[str]:
        """The manifest's keys, least recently used first; [] when there is none or it is
        unreadable (reported)."""
        path = self.folder / MANIFEST
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                raise ValueError(f"not a {_FORMAT} manifest")
            return list(dict.fromkeys(k for k in data["files"] if isinstance(k, str) and _KEY.fullmatch(k)))
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"vxl_fast memory cache: the manifest {MANIFEST} is unreadable ({type(e).__name__}); "
                          "the files it listed are left alone", RuntimeWarning, stacklevel=4)
            return []

    def _write_manifest(self) -> None:
        if self.folder is None or self.degraded is not None:
            return
        path, tmp = self.folder / MANIFEST, self.folder / (MANIFEST + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"format": _FORMAT, "files": list(self._disk)}, f)
            os.replace(tmp, path)
        except OSError as e:
            self._degrade("the memory cache folder cannot be written", e)

    def _spill(self, key: str, memory: VideoMemory) -> None:
        path = self._path(key)
        if os.path.lexists(path):  # a file the cache did not make (it is not in the manifest)
            return
        try:
            self._disk[key] = memory.save(path).stat().st_size
        except (OSError, ValueError) as e:  # ValueError: save's own check that the folder is writable
            self._degrade("the memory cache folder cannot be written", e)
            return
        while len(self._disk) > 1 and self.disk_nbytes > self.max_disk_bytes:
            self._drop_file(next(iter(self._disk)))
        if self.disk_nbytes > self.max_disk_bytes:
            self._drop_file(key)
        self._write_manifest()

    def _drop_file(self, key: str) -> None:
        with self._lock:
            self._disk.pop(key, None)
            try:
                self._path(key).unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                self._degrade("the memory cache folder cannot be written", e)

    def _degrade(self, what: str, e: Exception) -> None:
        """Stop writing to the folder; say why (without its path) in :meth:`health`."""
        code = getattr(e, "errno", None)
        if code in _FULL:
            why = "it is full"
        elif code in _READ_ONLY or isinstance(e, ValueError):
            why = "it is read-only or not writable"
        else:
            why = os.strerror(code) if code else type(e).__name__
        with self._lock:
            if self.degraded is None:
                self.degraded = f"{what} ({why}); memories are kept on the device only"
                warnings.warn(f"vxl_fast memory cache: {self.degraded}: {e}", RuntimeWarning, stacklevel=3)


def _file_size(path: Path) -> int | None:
    """The size of a regular file itself; None for a link, anything else or nothing."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _reason(e: Exception, path: Path) -> str:
    return str(e).replace(str(path), path.name)
