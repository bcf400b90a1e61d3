"""Encoded memories kept for the next question about the same video: an LRU bounded in bytes on
the model's device, spilling evicted memories to files (``VideoMemory.save``) when a folder is
given, itself an LRU bounded in bytes."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from ..video_memory import VideoMemory


class MemoryCache:
    """``key → VideoMemory``. Thread-safe. A memory larger than the whole device budget is not
    kept on the device (it goes straight to the folder, when there is one)."""

    def __init__(self, max_bytes: int, folder: str | os.PathLike | None = None, max_disk_bytes: int | None = None):
        if max_bytes < 0:
            raise ValueError(f"the memory cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes, self.max_disk_bytes = max_bytes, max_disk_bytes
        self.folder = Path(folder) if folder is not None else None
        self._device: OrderedDict[str, VideoMemory] = OrderedDict()
        self._disk: OrderedDict[str, int] = OrderedDict()  # key -> file size
        self._lock = threading.RLock()
        self.evictions = 0
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # NOTE: files of an earlier run are reused: a memory file names its checkpoint and
            # dtype, and VideoMemory.load refuses one made by another model.
            for f in sorted(self.folder.glob("*.vxl"), key=lambda p: p.stat().st_mtime):
                self._disk[f.stem] = f.stat().st_size

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(repr(parts).encode()).hexdigest()

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

    def load(self, key: str, model) -> VideoMemory | None:
        """Bring a spilled memory back to the device (device work: call it from the model's worker).
        A file that no longer loads is dropped."""
        with self._lock:
            if key not in self._disk:
                return None
            self._disk.move_to_end(key)
            path = self._path(key)
        try:
            memory = VideoMemory.load(path, model)
        except (ValueError, FileNotFoundError):
            self._drop_file(key)
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
                if self.folder is not None and old not in self._disk:
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

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{key}.vxl"

    def _spill(self, key: str, memory: VideoMemory) -> None:
        path = memory.save(self._path(key))
        self._disk[key] = path.stat().st_size
        while self.max_disk_bytes is not None and len(self._disk) > 1 and self.disk_nbytes > self.max_disk_bytes:
            self._drop_file(next(iter(self._disk)))
        if self.max_disk_bytes is not None and self.disk_nbytes > self.max_disk_bytes:
            self._drop_file(key)

    def _drop_file(self, key: str) -> None:
        with self._lock:
            self._disk.pop(key, None)
            try:
                self._path(key).unlink()
            except FileNotFoundError:
                pass
