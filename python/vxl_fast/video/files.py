"""Media files opened once: every reader of a :class:`MediaFile` reads that open file (by offset,
never by name), so what was checked, hashed and decoded is one and the same file.

``MediaFile.inside(root, relative)`` opens a file under ``root`` one component at a time with
``O_NOFOLLOW`` (a symlink swapped in after the path was checked is refused, not followed), then
checks where the open file really lies. ``from_bytes`` keeps a data: URL in memory (a sealed
memfd where the OS has one, an unnamed temporary file elsewhere).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tempfile
import weakref
from pathlib import Path

_CHUNK = 1 << 20
_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO never blocks the open
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutsideRoot(PermissionError):
    """The path leaves the allowed folder (or a symlink was swapped in while it was opened)."""


class MediaFile:
    """One regular file, opened; ``name`` is what messages call it (never resolved by the OS)."""

    def __init__(self, fd: int, name: str):
        self.fd, self.name = fd, name
        self._close = weakref.finalize(self, os.close, fd)  # closed when dropped, or by close()
        self._stat = os.fstat(fd)
        if not stat.S_ISREG(self._stat.st_mode):
            self.close()
            raise ValueError(f"{name} is not a regular file")

    @classmethod
    def open(cls, path: str | os.PathLike, name: str | None = None) -> "MediaFile":
        """Open ``path`` (following symlinks: the caller trusts it)."""
        return cls(os.open(path, _READ), str(path) if name is None else name)

    @classmethod
    def inside(cls, root: str | os.PathLike, relative: str | os.PathLike, name: str) -> "MediaFile":
        """Open ``root/relative`` without following any symlink below ``root`` (``relative`` has
        no ``..``; resolve symlinks first). Raises :class:`OutsideRoot` when a component is a
        symlink or the open file is not under ``root``; FileNotFoundError when it is missing."""
        parts = Path(relative).parts
        if not parts or any(p in ("..", "/") for p in parts) or Path(relative).is_absolute():
            raise OutsideRoot(f"{name} does not name a file inside the folder")
        fd = os.open(root, _READ | os.O_DIRECTORY)
        for part in parts[:-1]:
            fd = _step(fd, part, os.O_DIRECTORY)
        fd = _step(fd, parts[-1], 0)
        media = cls(fd, name)
        where = media.where()
        if where is not None and not Path(where).is_relative_to(os.path.realpath(root)):
            media.close()
            raise OutsideRoot(f"{name} is not inside the folder")
        return media

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "MediaFile":
        """``data`` in an anonymous in-memory file (read-only once written)."""
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("vxl_fast-media", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        else:
            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if hasattr(os, "memfd_create"):
                import fcntl

                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK
                            | fcntl.F_SEAL_SEAL)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, name)

    @property
    def size(self) -> int:
        return self._stat.st_size

    def reader(self, buffer: int = 1 << 16) -> io.BufferedReader:
        """A new file object over this file, with its own position and descriptor (a duplicate:
        it stays valid when this one is closed), for PyAV and Pillow. Close it."""
        if self.closed:
            raise ValueError(f"{self.name} was closed")
        return io.BufferedReader(_Reader(os.dup(self.fd), self.name), buffer)

    def where(self) -> str | None:
        """Where the open file lies (Linux ``/proc``); None when the OS cannot say."""
        try:
            return os.readlink(f"/proc/self/fd/{self.fd}")
        except OSError:
            return None

    def fd_path(self) -> str | None:
        """A path that opens this very file (``/proc/self/fd/N``) for decoders that only take paths."""
        path = f"/proc/self/fd/{self.fd}"
        return path if os.path.exists(path) else None

    def changed(self) -> bool:
        """Whether the file was written since it was opened (size, mtime or ctime differ)."""
        now = os.fstat(self.fd)
        return (now.st_size, now.st_mtime_ns, now.st_ctime_ns) != (self._stat.st_size, self._stat.st_mtime_ns,
                                                                    self._stat.st_ctime_ns)

    def identity(self) -> tuple:
        """What tells this version of the file apart (device, inode, size, mtime, ctime)."""
        s = self._stat
        return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns

    def digest(self) -> str:
        """sha256 of the content."""
        h, offset = hashlib.sha256(), 0
        while block := os.pread(self.fd, _CHUNK, offset):
            h.update(block)
            offset += len(block)
        return h.hexdigest()

    @property
    def closed(self) -> bool:
        return not self._close.alive

    def close(self) -> None:
        self._close()

    def __enter__(self) -> "MediaFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MediaFile({self.name!r}, {self.size} bytes)"


def _step(dir_fd: int, part: str, flags: int) -> int:
    """Open ``part`` of the directory ``dir_fd`` without following a symlink; closes ``dir_fd``."""
    try:
        return os.open(part, _READ | _NOFOLLOW | flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK) or (e.errno == errno.ENOTDIR and _is_link(part, dir_fd)):
            raise OutsideRoot(f"{part} is a symlink (it changed after the path was checked)") from None
        raise
    finally:
        os.close(dir_fd)


def _is_link(part: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


class _Reader(io.RawIOBase):
    """A read-only, seekable view of an open file descriptor (its own; closed with it) with a
    position of its own."""

    def __init__(self, fd: int, name: str):
        super().__init__()
        self._fd, self._pos, self.name = fd, 0, name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = os.pread(self._fd, len(buffer), self._pos)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: os.fstat(self._fd).st_size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "seek before the start of the file")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
