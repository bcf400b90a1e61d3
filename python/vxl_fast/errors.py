"""Exceptions raised for problems the caller can fix, and the install hint of a missing extra."""


def install_hint(extra: str) -> str:
    """How to add an optional extra (``serve``, ``ray``) to a checkout set up as the README says
    (vxl_fast is not on PyPI; build isolation would rebuild the extension without torch)."""
    return f'pip install --no-build-isolation ".[{extra}]" in the vxl_fast checkout'


class CheckpointError(ValueError):
    """The checkpoint folder is missing, incomplete or describes an unsupported model."""


class MemoryPlanError(RuntimeError):
    """The planned KV cache and work buffers do not fit the device."""


class MemoryFileError(ValueError):
    """A memory file is missing, damaged, or was written for another model."""


class EncodeCancelled(Exception):
    """An encode was stopped through its ``cancel`` event before it finished."""
