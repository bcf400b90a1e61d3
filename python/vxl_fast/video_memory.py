"""The user's handle on a compressed video: ask it questions, extend it, save it, load it."""

from __future__ import annotations

import os
from pathlib import Path

from .engine import compress
from .errors import MemoryFileError
from .memory.files import check_compatible, identity_key, read_state_file, restore_fields
from .memory.kv import KVCache, VstStage
from .memory.plan import VisualWindow
from .memory.state import MemoryState
from .options import DEFAULT_RESERVE
from .prompt import prefix_ids
from .video.inputs import frames_input


class VideoMemory:
    """The compressed memory of one video (or image), made by :meth:`VideoXL.encode`.

    It holds the kept K/V — the prompt text before the video (the sink) and every window's VSTs —
    in the first ``kv_slots`` slots of ``cache``; questions write their K/V after those slots and
    leave them untouched. Frames fed with :meth:`append` are compressed window by window; an
    incomplete last window waits until it fills or :meth:`flush` is called. Calls from several
    threads run one at a time (the model's lock).
    """

    def __init__(self, model, state: MemoryState):
        self.model, self.state = model, state

    # ------------------------------------------------------------------ what it holds
    @property
    def cache(self) -> KVCache:
        return self.state.cache

    @property
    def stage(self) -> VstStage:
        return self.state.stage

    @property
    def windows(self) -> list[VisualWindow]:
        return self.state.windows

    @property
    def ratios(self) -> tuple[int, ...]:
        return self.state.ratios

    @property
    def modality(self) -> str:
        return self.state.modality

    @property
    def prefix_text(self) -> str:
        return self.state.prefix_text

    @property
    def frames(self) -> int:
        """Frames (or image tiles) ingested."""
        return self.state.frames

    @property
    def timestamps(self) -> list[float] | None:
        return self.state.timestamps

    @property
    def num_vsts(self) -> int:
        return self.state.num_vsts

    @property
    def visual_tokens(self) -> int:
        return self.state.visual_tokens

    @property
    def pending_tokens(self) -> int:
        """Visual tokens of the incomplete last window, not compressed yet."""
        return self.state.pending_tokens

    @property
    def kv_slots(self) -> int:
        return self.state.kv_slots

    @property
    def identity(self) -> dict | None:
        """What the memory was made from, as its maker recorded it (the server: the media's
        hashes, sampling, ratio, system prompt, checkpoint, dtype); saved with it. None: unknown."""
        return self.state.identity

    @property
    def stats(self) -> dict:
        """Seconds spent making it: ``vision_s``, ``compress_s``."""
        return self.state.stats.as_dict()

    # ------------------------------------------------------------------ live input
    def append(self, frames, timestamps: list[float] | None = None, progress: bool = False) -> "VideoMemory":
        """Add frames (uint8 [T, H, W, 3]); every window they complete is compressed now."""
        visual = frames_input(self.model.config, frames, timestamps)
        compress.append(self.model.runner, self.state, visual, progress)
        return self

    def flush(self) -> "VideoMemory":
        """Compress the incomplete last window (the end of the video)."""
        compress.flush(self.model.runner, self.state)
        return self

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the memory (safetensors + JSON metadata with checksums). Atomic: an interrupted
        save never leaves a half-written file at ``path``; the file follows the umask."""
        return compress.save(self.model.runner, self.state, path)

    @classmethod
    def load(cls, path: str | os.PathLike, model, compression_ratio: int | None = None,
             reserve_tokens: int = DEFAULT_RESERVE, identity: dict | None = None) -> "VideoMemory":
        """Read a memory written by :meth:`save` for ``model`` (same checkpoint and dtype).

        Every byte is verified against the checksums written with it. ``compression_ratio``,
        when given, must be the one the memory was encoded with; ``identity``, when given, the
        one the file records (a file made from other media or options is refused)."""
        meta, tensors = read_state_file(path)
        if identity is not None and (meta.get("identity") is None
                                     or identity_key(meta["identity"]) != identity_key(identity)):
            raise MemoryFileError(f"memory file {path} was made for another video or other options "
                                  "than the ones asked for")
        if meta["fingerprint"] != model.fingerprint:
            raise MemoryFileError(f"memory file {path} was made with another checkpoint "
                                  f"({meta['fingerprint'][:12]}…, this model is {model.fingerprint[:12]}…)")
        check_compatible(path, meta, model.dtype, compression_ratio)
        if prefix_ids(model.tokenizer, meta["prefix_text"]) != meta["prefix_ids"]:
            raise MemoryFileError(f"memory file {path}: the tokenizer gives other ids for its prompt prefix")
        try:
            fields = restore_fields(meta)
        except (TypeError, ValueError) as e:
            raise MemoryFileError(f"memory file {path} is corrupt: {e}") from None
        memory = cls(model, compress.restore(model.runner, meta, tensors, fields, reserve_tokens))
        memory.state.identity = meta.get("identity")
        return memory
