"""What the three command lines (``vxl-fast``, its ``serve`` and ``batch`` commands) share."""

from __future__ import annotations

import os


def default_model() -> str | None:
    """The ``--model`` default: ``$VXL_FAST_MODEL`` (None when unset)."""
    return os.environ.get("VXL_FAST_MODEL")
