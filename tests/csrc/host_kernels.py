"""Builds tests/csrc/host_kernels.cpp (the CUDA kernel headers + the host shim) with the system C++
compiler into a small C library and calls its launchers on CPU tensors through ctypes.

A build is cached under build/host_kernels/<key>/, the key hashing the compiler, the flags and
every source it reads (the shim, host_kernels.cpp, csrc/include/vxl_fast/*), so a second test run
loads it in milliseconds and an edited kernel is rebuilt.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = REPO / "build" / "host_kernels"
FLAGS = ["-std=c++20", "-O1", "-fPIC", "-shared", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror"]
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
CUDA_ERROR_INVALID_CONFIGURATION = 9
CUDA_ERROR_LAUNCH_FAILURE = 719

_i64 = ctypes.c_int64
_ptr = ctypes.c_void_p


def compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if not cxx:
        pytest.skip("no C++ compiler (g++ or $CXX) to build the host kernels")
    return cxx


def _sources() -> list[Path]:
    return sorted([HERE / "host_kernels.cpp", *(HERE / "shim").glob("*.h"),
                   *(REPO / "csrc" / "include" / "vxl_fast").iterdir()])


def build(cuda_arch: int | None = None, plant_bug: bool = False) -> Path:
    """The path of the host-kernel library, compiled unless cached. cuda_arch defines __CUDA_ARCH__
    (the kernels' device-only branches); plant_bug builds the wrong index of host_kernels.cpp."""
    cxx = compiler()
    flags = list(FLAGS)
    if cuda_arch is not None:
        flags.append(f"-D__CUDA_ARCH__={cuda_arch}")
    if plant_bug:
        flags.append("-DVXL_PLANT_BUG")
    key = hashlib.sha256()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    key.update(f"{cxx}\n{version}\n{flags}\n".encode())
    for path in _sources():
        key.update(path.name.encode() + path.read_bytes())
    folder = CACHE / key.hexdigest()[:16]
    lib = folder / "libvxl_host_kernels.so"
    if not lib.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"tmp-{os.getpid()}.so"
        cmd = [cxx, *flags, f"-I{HERE / 'shim'}", f"-I{REPO / 'csrc' / 'include'}",
               str(HERE / "host_kernels.cpp"), "-o", str(tmp)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the host-kernel build failed:\n{' '.join(cmd)}\n{result.stderr}")
        os.replace(tmp, lib)  # NOTE: atomic, so a concurrent run never loads a half-written file
    return lib


class HostKernels:
    """The launchers of one build, taking CPU tensors (the 'device' memory of the host shim)."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        self.lib.vxl_host_set_order.argtypes = [ctypes.c_uint64]
        self.lib.vxl_host_interleave_vst.argtypes = [_ptr, _i64, _ptr, _ptr, _i64, _i64, _i64, _i64]
        self.lib.vxl_host_kv_compact.argtypes = [ctypes.c_int, ctypes.POINTER(_ptr), ctypes.POINTER(_i64)]
        self.lib.vxl_host_clip_preprocess.argtypes = [ctypes.c_int, _ptr, ctypes.POINTER(_i64), _ptr,
                                                      _ptr, _ptr]
        self.lib.vxl_host_yuv420_to_rgb.argtypes = [ctypes.POINTER(_ptr), ctypes.POINTER(_i64), _ptr]
        self.lib.vxl_host_fused_add_rms_norm.argtypes = [ctypes.c_int, ctypes.POINTER(_ptr),
                                                         ctypes.POINTER(_i64), ctypes.c_float]
        self.lib.vxl_host_silu_and_mul.argtypes = [ctypes.c_int, _ptr, _ptr, ctypes.POINTER(_i64)]
        self.lib.vxl_host_add_layer_norm.argtypes = [ctypes.c_int, ctypes.POINTER(_ptr), ctypes.POINTER(_i64),
                                                     ctypes.c_float]
        self.lib.vxl_host_clip_embed_layer_norm.argtypes = [ctypes.c_int, ctypes.POINTER(_ptr),
                                                            ctypes.POINTER(_i64), ctypes.c_float]
        self.lib.vxl_host_bias_quick_gelu.argtypes = [ctypes.c_int, _ptr, _ptr, _ptr, ctypes.POINTER(_i64)]
        self.lib.vxl_host_rope_kv_write.argtypes = [ctypes.c_int, ctypes.POINTER(_ptr), ctypes.POINTER(_i64)]
        self.lib.vxl_host_shuffle_probe.argtypes = [_ptr, ctypes.c_uint, ctypes.c_uint]
        for name in ("float2half", "float2bfloat16", "half2float"):
            getattr(self.lib, f"vxl_host_{name}").argtypes = [_ptr, _ptr, _i64]
        self.cuda_arch = self.lib.vxl_host_cuda_arch()

    def set_order(self, seed: int) -> None:
        """0: blocks and threads in index order; else a shuffled launch order from this seed."""
        self.lib.vxl_host_set_order(seed)

    def interleave_vst_bytes(self, raw: torch.Tensor, vst: torch.Tensor, out: torch.Tensor,
                             ratio: int, carry: int) -> int:
        """launch_interleave_vst on byte rows: raw [n_raw, B] (any row stride), vst [B], out
        [n_out, B] contiguous, any dtype (B = row bytes). Returns the cudaError_t."""
        row_bytes = raw.shape[1] * raw.element_size()
        return self.lib.vxl_host_interleave_vst(raw.data_ptr(), raw.stride(0) * raw.element_size(),
                                                vst.data_ptr(), out.data_ptr(), out.shape[0],
                                                row_bytes, ratio, carry)

    def interleave_vst(self, raw: torch.Tensor, vst: torch.Tensor, ratio: int, carry: int) -> torch.Tensor:
        """The CUDA impl's call of the launcher (csrc/cuda/interleave_vst.cu), on the host."""
        n_out = raw.shape[0] + (raw.shape[0] + carry) // ratio
        out = torch.full((n_out, raw.shape[1]), float("nan"), dtype=raw.dtype)
        rc = self.interleave_vst_bytes(raw, vst, out, ratio, carry)
        assert rc == 0, f"launch_interleave_vst returned cudaError_t {rc}"
        return out

    def kv_compact_launch(self, cache_k, cache_v, vst_k, vst_v, cos, sin, dst: int) -> int:
        """launch_kv_compact with the CUDA impl's parameters (csrc/cuda/kv_compact.cu)."""
        tensors = (cache_k, cache_v, vst_k, vst_v, cos, sin)
        ptrs = (_ptr * 6)(*(t.data_ptr() for t in tensors))
        ints = (_i64 * 14)(cache_k.stride(0), cache_k.stride(1), cache_v.stride(0), cache_v.stride(1),
                           vst_k.stride(0), vst_k.stride(1), vst_v.stride(0), vst_v.stride(1),
                           cos.stride(0), sin.stride(0), cache_k.shape[0], vst_k.shape[1],
                           cache_k.shape[2] // 2, dst)
        return self.lib.vxl_host_kv_compact(DTYPE_CODES[cache_k.dtype], ptrs, ints)

    def kv_compact(self, cache_k, cache_v, vst_k, vst_v, cos, sin, dst: int) -> None:
        """The CUDA impl, on the host: the kernel when there is work."""
        if vst_k.shape[1] > 0 and cache_k.shape[0] > 0:
            rc = self.kv_compact_launch(cache_k, cache_v, vst_k, vst_v, cos, sin, dst)
            assert rc == 0, f"launch_kv_compact returned cudaError_t {rc}"

    def clip_preprocess_out(self, frames: torch.Tensor, size: int, crop: int, mean, std,
                            out: torch.Tensor, patch: int = 0) -> torch.Tensor:
        """launch_clip_preprocess into out [T, 3, crop, crop], or patch rows [T, g * g, 3 p²] for
        patch p > 0 (last dim contiguous)."""
        t, h, w, _ = frames.shape
        strides = (*out.stride(), 0)[:3]
        ints = (_i64 * 12)(t, h, w, *frames.stride()[:3], size, crop, *strides, patch)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
        rc = self.lib.vxl_host_clip_preprocess(DTYPE_CODES[out.dtype], frames.data_ptr(), ints,
                                               mean_t.data_ptr(), std_t.data_ptr(), out.data_ptr())
        assert rc == 0, f"launch_clip_preprocess returned cudaError_t {rc}"
        return out

    def yuv420_to_rgb(self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: int,
                      full_range: bool) -> torch.Tensor:
        """launch_yuv420_to_rgb with the CUDA impl's parameters: y [T, H, W], u, v [T, (H + 1) // 2,
        (W + 1) // 2] uint8 of any strides -> a new uint8 [T, H, W, 3]."""
        out = torch.zeros((*y.shape, 3), dtype=torch.uint8)
        planes = (_ptr * 3)(y.data_ptr(), u.data_ptr(), v.data_ptr())
        ints = (_i64 * 14)(*y.shape, *y.stride(), *u.stride(), *v.stride(), matrix, int(full_range))
        rc = self.lib.vxl_host_yuv420_to_rgb(planes, ints, out.data_ptr())
        assert rc == 0, f"launch_yuv420_to_rgb returned cudaError_t {rc}"
        return out

    def fused_add_rms_norm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The CUDA impl (csrc/cuda/fused_add_rms_norm.cu), on the host: rows of [..., D] views."""
        return self._add_norm("fused_add_rms_norm", "launch_add_rms_norm", x, residual, (weight,), eps)

    def add_layer_norm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The CUDA impl (csrc/cuda/add_layer_norm.cu), on the host: rows of [..., D] views."""
        return self._add_norm("add_layer_norm", "launch_add_layer_norm", x, residual, (weight, bias), eps)

    def _add_norm(self, op: str, launch: str, x: torch.Tensor, residual: torch.Tensor, params: tuple,
                  eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """What csrc/cuda/add_norm_launch.h does for a residual-add norm: outputs (NaN-filled, so
        that an unwritten element shows), rows of x and residual, then the op's parameters."""
        d = x.shape[-1]
        x2, r2 = x.reshape(-1, d), residual.reshape(-1, d)
        out = torch.full(x.shape, float("nan"), dtype=x.dtype)
        residual_out = torch.full(x.shape, float("nan"), dtype=x.dtype)
        if x2.shape[0]:
            tensors = (out, residual_out, x2, r2, *params)
            ptrs = (_ptr * len(tensors))(*(t.data_ptr() for t in tensors))
            ints = (_i64 * 4)(x2.shape[0], d, x2.stride(0), r2.stride(0))
            rc = getattr(self.lib, f"vxl_host_{op}")(DTYPE_CODES[x.dtype], ptrs, ints, eps)
            assert rc == 0, f"{launch} returned cudaError_t {rc}"
        return out, residual_out

    def clip_embed_layer_norm(self, patches: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor,
                              weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        """The CUDA impl (csrc/cuda/clip_embed_layer_norm.cu), on the host: -> [F, P + 1, C]."""
        f, p, c = patches.shape
        out = torch.full((f, p + 1, c), float("nan"), dtype=patches.dtype)
        if out.numel():
            ptrs = (_ptr * 6)(out.data_ptr(), patches.data_ptr(), cls.data_ptr(), pos.data_ptr(),
                              weight.data_ptr(), bias.data_ptr())
            ints = (_i64 * 6)(f, p, c, patches.stride(0), patches.stride(1), pos.stride(0))
            rc = self.lib.vxl_host_clip_embed_layer_norm(DTYPE_CODES[patches.dtype], ptrs, ints, eps)
            assert rc == 0, f"launch_clip_embed_layer_norm returned cudaError_t {rc}"
        return out

    def bias_quick_gelu(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The CUDA impl (csrc/cuda/bias_quick_gelu.cu), on the host: x [..., F], bias [F] -> [..., F]."""
        x2 = x.reshape(-1, x.shape[-1])
        out = torch.full(x.shape, float("nan"), dtype=x.dtype)
        if out.numel():
            ints = (_i64 * 3)(x2.shape[0], x2.shape[1], x2.stride(0))
            rc = self.lib.vxl_host_bias_quick_gelu(DTYPE_CODES[x.dtype], out.data_ptr(), x2.data_ptr(),
                                                   bias.data_ptr(), ints)
            assert rc == 0, f"launch_bias_quick_gelu returned cudaError_t {rc}"
        return out

    def silu_and_mul(self, x: torch.Tensor) -> torch.Tensor:
        """The CUDA impl (csrc/cuda/silu_and_mul.cu), on the host: x [..., 2F] -> [..., F]."""
        x2 = x.reshape(-1, x.shape[-1])
        out = torch.full((*x.shape[:-1], x.shape[-1] // 2), float("nan"), dtype=x.dtype)
        if out.numel():
            ints = (_i64 * 3)(x2.shape[0], x2.shape[1] // 2, x2.stride(0))
            rc = self.lib.vxl_host_silu_and_mul(DTYPE_CODES[x.dtype], out.data_ptr(), x2.data_ptr(), ints)
            assert rc == 0, f"launch_silu_and_mul returned cudaError_t {rc}"
        return out

    def rope_kv_write(self, q, k, v, cos, sin, cache_k, cache_v, start: int) -> torch.Tensor:
        """The CUDA impl (csrc/cuda/rope_kv_write.cu), on the host: returns q_out [H, n, d]."""
        n, heads, d = q.shape
        q_out = torch.full((heads, n, d), float("nan"), dtype=q.dtype)
        if n and heads + k.shape[1]:
            tensors = (q_out, cache_k, cache_v, q, k, v, cos, sin)
            ptrs = (_ptr * 8)(*(t.data_ptr() for t in tensors))
            ints = (_i64 * 17)(q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                               cache_k.stride(0), cache_k.stride(1), cache_v.stride(0), cache_v.stride(1),
                               cos.stride(0), sin.stride(0), n, heads, k.shape[1], d // 2, start)
            rc = self.lib.vxl_host_rope_kv_write(DTYPE_CODES[q.dtype], ptrs, ints)
            assert rc == 0, f"launch_rope_kv_write returned cudaError_t {rc}"
        return q_out

    def shuffle_probe(self, threads: int, active: int = 32) -> tuple[int, torch.Tensor]:
        """(cudaError_t, [warps, 5, 32] values read at the 5 butterfly shuffles, NaN where unread)."""
        warps = (threads + 31) // 32
        out = torch.full((warps, 5, 32), float("nan"))
        rc = self.lib.vxl_host_shuffle_probe(out.data_ptr(), threads, active)
        return rc, out

    def convert(self, name: str, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """The shim's scalar conversion `name` (float2half, float2bfloat16, half2float), elementwise."""
        x = x.contiguous()
        y = torch.empty(x.shape, dtype=out_dtype)
        getattr(self.lib, f"vxl_host_{name}")(x.data_ptr(), y.data_ptr(), x.numel())
        return y


_loaded: dict[tuple, HostKernels] = {}


def host_kernels(cuda_arch: int | None = None, plant_bug: bool = False) -> HostKernels:
    """The host kernels of one build, built (or taken from the cache) and loaded once per process."""
    key = (cuda_arch, plant_bug)
    if key not in _loaded:
        _loaded[key] = HostKernels(build(cuda_arch, plant_bug))
    return _loaded[key]
