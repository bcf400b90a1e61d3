"""Exceptions raised for problems the caller can fix."""


class CheckpointError(ValueError):
    """The checkpoint folder is missing, incomplete or describes an unsupported model."""


class MemoryPlanError(RuntimeError):
    """The planned KV cache and work buffers do not fit the device."""


class MemoryFileError(ValueError):
    """A memory file is missing, damaged, or was written for another model."""


class EncodeCancelled(Exception):
    """An encode was stopped through its ``cancel`` event before it finished."""
