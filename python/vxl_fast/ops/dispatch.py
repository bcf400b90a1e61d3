"""Which implementation of an op runs — the one rule, applied by every wrapper in ``ops``:

1. a CUDA kernel where the extension has one and the policy allows it ("check": it passed its
   self-check on that device for that dtype; "trust": always);
2. the C++ CPU kernel only where it is bit-exact with the reference twin (``OpSpec.cpu_exact``);
3. otherwise the reference twin, the PyTorch composition the goldens record.

The policy (``KernelPolicy``, mode "off" runs only the twins) is the runner's, made from its
``RuntimeOptions`` and active while it works (``using``); outside any runner, a process-wide one
made from the environment at first use.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings

import torch

from .. import _ext
from ..runtime import KERNEL_MODES, RuntimeOptions
from .table import OPS

# NOTE: looked up once: the dispatcher is not queried on every call.
CUDA_KERNELS = frozenset(
    name for name in OPS
    if _ext.available and torch._C._dispatch_has_kernel_for_dispatch_key(f"vxl_fast::{name}", "CUDA"))


class KernelPolicy:
    """Which compiled kernels may run (mode "check", "trust" or "off"), with the self-check's verdicts
    per (op, device, dtype) and a warning once if the extension cannot serve a request.
    ``every_cpu_kernel`` runs the C++ CPU kernels that are not bit-exact too (the tests rehearse the
    fused CUDA wiring on the CPU this way; the engine never sets it)."""

    def __init__(self, mode: str = "check", every_cpu_kernel: bool = False):
        if mode not in KERNEL_MODES:
            raise ValueError(f"kernels must be one of {', '.join(KERNEL_MODES)}, got {mode!r}")
        self.mode, self.every_cpu_kernel = mode, every_cpu_kernel
        self.checked_devices = frozenset({"cuda"})  # device types whose kernels are checked at first use
        self.verdicts: dict[tuple[str, torch.device, torch.dtype], bool] = {}
        self._warned = False

    def compiled(self, name: str, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether ``vxl_fast::<name>`` runs (else its reference twin does): the rule above."""
        if self.mode == "off":
            return False
        if not _ext.available:
            return self._fall_back(f"the vxl_fast._C extension failed to load ({_ext.error})")
        if device.type == "cpu":
            if not (OPS[name].cpu_exact or self.every_cpu_kernel):
                return False
        elif device.type != "cuda":
            return False
        elif name not in CUDA_KERNELS:
            return self._fall_back("vxl_fast._C was built without CUDA kernels")
        return self.mode == "trust" or device.type not in self.checked_devices or self._checked(name, device, dtype)

    def _checked(self, name: str, device: torch.device, dtype: torch.dtype) -> bool:
        key = (name, device, dtype)
        if key not in self.verdicts:
            problem = check_op(name, device, dtype)
            self.verdicts[key] = problem is None
            if problem is not None:
                warnings.warn(f"vxl_fast: the {name} kernel failed its self-check on {device} for {dtype} "
                              f"({problem}); {name} uses the pure-PyTorch reference there "
                              f"(VXL_KERNELS=trust skips the check).", RuntimeWarning, stacklevel=5)
        return self.verdicts[key]

    def _fall_back(self, reason: str) -> bool:
        if not self._warned:
            self._warned = True
            warnings.warn(f"vxl_fast ops fall back to the pure-PyTorch reference: {reason}; {_ext.REBUILD_HINT}",
                          RuntimeWarning, stacklevel=5)
        return False


def check_op(name: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """Runs the compiled ``name`` (and its ``_out`` variant) once on a small input on ``device`` in
    ``dtype`` against its reference twin: None if they agree, else what differed (or what it raised)."""
    try:
        return OPS[name].check(device, dtype)
    except Exception as exc:  # noqa: BLE001 - a kernel that raises is as broken as a wrong one
        return f"it raised {type(exc).__name__}: {exc}"


_ACTIVE: contextvars.ContextVar[KernelPolicy | None] = contextvars.ContextVar("vxl_fast_kernel_policy", default=None)
_REFERENCE: contextvars.ContextVar[KernelPolicy | None] = contextvars.ContextVar("vxl_fast_reference", default=None)


@functools.cache
def process_policy() -> KernelPolicy:
    """The policy outside any runner: ``VXL_KERNELS`` (``RuntimeOptions.from_env``), read at first use."""
    return KernelPolicy(RuntimeOptions.from_env().kernels)


def active() -> KernelPolicy:
    return _REFERENCE.get() or _ACTIVE.get() or process_policy()


@contextlib.contextmanager
def using(policy: KernelPolicy):
    """Apply ``policy`` to the ops called inside this block (in this thread or task)."""
    token = _ACTIVE.set(policy)
    try:
        yield policy
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def reference_only():
    """Run every op through its pure-PyTorch reference twin inside this block, whatever policy a
    runner applies inside it (the benchmarks' baseline)."""
    token = _REFERENCE.set(KernelPolicy("off"))
    try:
        yield
    finally:
        _REFERENCE.reset(token)


# NOTE: a constant to torch.compile (evaluated once while tracing), as it is for one policy.
@torch.compiler.assume_constant_result
def compiled(name: str, device: torch.device, dtype: torch.dtype) -> bool:
    return active().compiled(name, device, dtype)
