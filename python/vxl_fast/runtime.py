"""Runtime options: how the engine runs a model (never what it computes), chosen once per model.

The environment is read here and nowhere else in the package, and only when asked
(``RuntimeOptions.from_env()``, ``default_model()``), never at import.

| variable | option | values |
|---|---|---|
| ``VXL_ATTENTION`` | ``attention`` | auto (default), prefix, split, cudnn, masked |
| ``VXL_VST_PROJECTION`` | ``vst_projection`` | auto (default), gather, overwrite |
| ``VXL_CUDA_GRAPH`` | ``cuda_graphs`` | 1 (default), 0 |
| ``VXL_KERNELS`` | ``kernels`` | check (default), trust, off |
| ``VXL_FAST_MODEL`` | the CLIs' ``--model`` default | a checkpoint folder or hub id |
| ``VXL_FAST_CACHE`` | where ``vxl-fast demo`` writes its files | a folder (default ``~/.cache/vxl_fast``) |
| ``RAY_ADDRESS`` | the Ray cluster to join (``vxl_fast.distributed``) | Ray's address forms |
| ``OMP_NUM_THREADS`` | the CLIs' ``--threads`` default (torch reads it too) | a positive integer |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ATTENTION_BACKENDS = ("prefix", "split", "cudnn", "masked")
VST_PROJECTIONS = ("gather", "overwrite", "grouped")
KERNEL_MODES = ("check", "trust", "off")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class RuntimeOptions:
    """``attention``: the window attention backend ("auto": on CUDA in bf16/fp16, the fastest one that
    agrees with the reference at first use; ``layers.attention``). ``vst_projection``: how a visual
    window's q/k/v are projected ("auto": the faster on CUDA, else "gather"; ``layers.step``).
    ``cuda_graphs``: decode through a captured CUDA graph on CUDA. ``kernels``: the compiled ops'
    policy — "check" each CUDA kernel (and the decode step, ``Runner.check_decode``) against its
    reference at first use, "trust" them, or "off" (the pure-PyTorch twins everywhere;
    ``ops.dispatch``)."""

    attention: str = "auto"
    vst_projection: str = "auto"
    cuda_graphs: bool = True
    kernels: str = "check"

    def __post_init__(self):
        _one_of("attention", self.attention, ("auto", *ATTENTION_BACKENDS))
        _one_of("vst_projection", self.vst_projection, ("auto", *VST_PROJECTIONS))
        _one_of("kernels", self.kernels, KERNEL_MODES)
        if not isinstance(self.cuda_graphs, bool):
            raise TypeError(f"cuda_graphs must be True or False, got {self.cuda_graphs!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RuntimeOptions":
        """The options the ``VXL_*`` variables of ``environ`` (default ``os.environ``) set; unset or
        empty ones keep their defaults. A bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ

        def read(var: str, default: str) -> str:
            return env.get(var, "").strip().lower() or default

        graphs = read("VXL_CUDA_GRAPH", "1")
        if graphs not in ("0", "1"):
            raise ValueError(f"VXL_CUDA_GRAPH={graphs!r} is not one of 0, 1")
        values = {"attention": read("VXL_ATTENTION", "auto"), "vst_projection": read("VXL_VST_PROJECTION", "auto"),
                  "kernels": read("VXL_KERNELS", "check")}
        for field, var in (("attention", "VXL_ATTENTION"), ("vst_projection", "VXL_VST_PROJECTION"),
                           ("kernels", "VXL_KERNELS")):
            try:
                cls(**{field: values[field]})
            except ValueError as e:
                raise ValueError(f"{var}: {e}") from None
        return cls(cuda_graphs=graphs == "1", **values)


def default_model(environ: Mapping[str, str] | None = None) -> str | None:
    """The checkpoint the command-line tools load when ``--model`` is not given: ``VXL_FAST_MODEL``
    (None when unset: the tools then ask for ``--model``)."""
    env = os.environ if environ is None else environ
    return env.get("VXL_FAST_MODEL") or None


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the command-line demo keeps its files: ``VXL_FAST_CACHE``, else ``~/.cache/vxl_fast``."""
    env = os.environ if environ is None else environ
    return Path(env.get("VXL_FAST_CACHE") or Path.home() / ".cache" / "vxl_fast")


def api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The key ``vxl-fast serve`` requires when ``--api-key`` is not given: ``VXL_FAST_API_KEY``
    (kept out of the process list; None when unset: no key)."""
    env = os.environ if environ is None else environ
    return env.get("VXL_FAST_API_KEY") or None


def ray_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The Ray cluster to join when none is named: ``RAY_ADDRESS`` (None: start a local one)."""
    env = os.environ if environ is None else environ
    return env.get("RAY_ADDRESS") or None


def omp_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """``OMP_NUM_THREADS`` when it is a positive integer (the user's choice of CPU threads), else None."""
    env = os.environ if environ is None else environ
    value = env.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
