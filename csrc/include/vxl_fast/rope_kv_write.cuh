// CUDA kernel for rope_kv_write: a text step's queries and keys rotated at positions
// start .. start + n - 1 (rope.h, fp32, cast once), the keys and values written into the cache.
//
// For row i < n, p = start + i:
//     q_out[h, i]          = cast(rope(q[i, h], p))    h < H
//     cache_k[g, p]        = cast(rope(k[i, g], p))    g < Hkv
//     cache_v[g, p]        = v[i, g]
// One thread block per (i, head of the H query and Hkv key heads); thread t handles the element
// pairs (c, c + half), c = t, t + T, ...
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "vxl_fast/float_cast.cuh"
#include "vxl_fast/launch.cuh"
#include "vxl_fast/rope.h"

namespace vxl_fast {

// Element strides; the last dimension of every tensor is contiguous.
template <typename T>
struct RopeKvWriteParams {
  T* q_out;  // [H, n, d] contiguous
  T* cache_k;  // [Hkv, C, d]
  T* cache_v;  // [Hkv, C, d]
  const T* q;  // [n, H, d]
  const T* k;  // [n, Hkv, d]
  const T* v;  // [n, Hkv, d]
  const float* cos;  // [P, d]
  const float* sin;  // [P, d]
  int64_t q_stride_row, q_stride_h, k_stride_row, k_stride_h, v_stride_row, v_stride_h;
  int64_t cache_k_stride_h, cache_k_stride_row, cache_v_stride_h, cache_v_stride_row;
  int64_t cos_stride_row, sin_stride_row;
  int64_t n, heads, kv_heads, half, start;
};

template <typename T>
__global__ void rope_kv_write_kernel(const RopeKvWriteParams<T> p) {
  const int64_t i = blockIdx.x;
  const int64_t h = blockIdx.y;
  const int64_t pos = p.start + i;
  const float* cos_p = p.cos + pos * p.cos_stride_row;
  const float* sin_p = p.sin + pos * p.sin_stride_row;
  const bool query = h < p.heads;
  const int64_t g = h - p.heads;
  const T* x = query ? p.q + i * p.q_stride_row + h * p.q_stride_h
                     : p.k + i * p.k_stride_row + g * p.k_stride_h;
  T* y = query ? p.q_out + (h * p.n + i) * 2 * p.half
               : p.cache_k + g * p.cache_k_stride_h + pos * p.cache_k_stride_row;
  for (int64_t c = threadIdx.x; c < p.half; c += blockDim.x) {
    const float lo = to_float(x[c]);
    const float hi = to_float(x[c + p.half]);
    y[c] = from_float<T>(rope_lo(lo, hi, cos_p[c], sin_p[c]));
    y[c + p.half] = from_float<T>(rope_hi(lo, hi, cos_p[c + p.half], sin_p[c + p.half]));
  }
  if (!query) {
    const T* xv = p.v + i * p.v_stride_row + g * p.v_stride_h;
    T* yv = p.cache_v + g * p.cache_v_stride_h + pos * p.cache_v_stride_row;
    for (int64_t c = threadIdx.x; c < 2 * p.half; c += blockDim.x) {
      yv[c] = xv[c];
    }
  }
}

// Requires 1 <= n < 2^31 and 1 <= heads + kv_heads < 2^16 (grid limits).
template <typename T>
cudaError_t launch_rope_kv_write(const RopeKvWriteParams<T>& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.n), static_cast<unsigned>(p.heads + p.kv_heads));
  VXL_LAUNCH(rope_kv_write_kernel<T>, grid, threads_for(p.half), 0, stream)(p);
  return cudaGetLastError();
}

}  // namespace vxl_fast
