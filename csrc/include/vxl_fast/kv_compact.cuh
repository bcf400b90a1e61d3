// CUDA kernel for kv_compact: a window's VST keys (before RoPE) and values, staged in a small
// side buffer, written to their final cache slots with the keys RoPE'd at those slots.
//
// For every head h and i < nb, with p = dst + i and x = vst_k[h, i] in fp32:
//     cache_k[h, p] = cast(x * cos[p] + rotate_half(x) * sin[p])   (rope.h)
//     cache_v[h, p] = vst_v[h, i]
// The slots [dst, dst + nb) held the window's own rows; the sources are a separate buffer, so
// blocks may run in any order. One thread block per (i, h); thread t handles the element pairs
// (c, c + half), c = t, t + T, ...
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "vxl_fast/float_cast.cuh"
#include "vxl_fast/launch.cuh"
#include "vxl_fast/rope.h"

namespace vxl_fast {

// Element strides; the last dimension of every tensor is contiguous.
template <typename T>
struct KvCompactParams {
  T* cache_k;  // [Hkv, C, d]
  T* cache_v;  // [Hkv, C, d]
  const T* vst_k;  // [Hkv, nb, d]
  const T* vst_v;  // [Hkv, nb, d]
  const float* cos;  // [P, d]
  const float* sin;  // [P, d]
  int64_t cache_k_stride_h, cache_k_stride_row;
  int64_t cache_v_stride_h, cache_v_stride_row;
  int64_t vst_k_stride_h, vst_k_stride_row;
  int64_t vst_v_stride_h, vst_v_stride_row;
  int64_t cos_stride_row, sin_stride_row;
  int64_t heads, nb, half, dst;
};

template <typename T>
__global__ void kv_compact_kernel(const KvCompactParams<T> p) {
  const int64_t i = blockIdx.x;
  const int64_t h = blockIdx.y;
  const int64_t pos = p.dst + i;
  const T* xk = p.vst_k + h * p.vst_k_stride_h + i * p.vst_k_stride_row;
  const T* xv = p.vst_v + h * p.vst_v_stride_h + i * p.vst_v_stride_row;
  T* yk = p.cache_k + h * p.cache_k_stride_h + pos * p.cache_k_stride_row;
  T* yv = p.cache_v + h * p.cache_v_stride_h + pos * p.cache_v_stride_row;
  const float* cos_p = p.cos + pos * p.cos_stride_row;
  const float* sin_p = p.sin + pos * p.sin_stride_row;
  for (int64_t c = threadIdx.x; c < p.half; c += blockDim.x) {
    const float lo = to_float(xk[c]);
    const float hi = to_float(xk[c + p.half]);
    yk[c] = from_float<T>(rope_lo(lo, hi, cos_p[c], sin_p[c]));
    yk[c + p.half] = from_float<T>(rope_hi(lo, hi, cos_p[c + p.half], sin_p[c + p.half]));
    yv[c] = xv[c];
    yv[c + p.half] = xv[c + p.half];
  }
}

// Requires 1 <= nb < 2^31 and 1 <= heads < 2^16 (grid limits).
template <typename T>
cudaError_t launch_kv_compact(const KvCompactParams<T>& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.nb), static_cast<unsigned>(p.heads));
  VXL_LAUNCH(kv_compact_kernel<T>, grid, threads_for(p.half), 0, stream)(p);
  return cudaGetLastError();
}

}  // namespace vxl_fast
