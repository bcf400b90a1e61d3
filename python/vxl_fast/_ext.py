"""Loads the compiled extension ``vxl_fast._C`` once and remembers why it failed.

Importing ``_C`` registers the ``torch.ops.vxl_fast`` ops (CPU, and CUDA when it was built with
CUDA). This module never raises: on failure ``available`` is False and ``error`` says why.
"""

# NOTE: torch first: it loads libc10/libtorch (and, for a CUDA torch, the nvidia-* libraries) that
# _C links against, and the ops must register with the dispatcher of this very torch.
import torch  # noqa: F401

REBUILD_HINT = "rebuild it against the installed torch: pip install --no-build-isolation ."

available: bool
error: str | None

try:
    from . import _C  # noqa: F401
except Exception as exc:  # noqa: BLE001 - any failure means "fall back", never an import error
    available = False
    error = f"{type(exc).__name__}: {exc}"
else:
    available = True
    error = None
