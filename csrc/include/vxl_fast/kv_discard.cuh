// CUDA kernel for kv_discard: move a window's VST keys/values into the persistent KV cache,
// applying RoPE to the keys at their final positions.
//
// For every head h and i < nb, with r = vst_index[i], p = dst + i, x = scratch_k[h, r] in fp32:
//     cache_k[h, p] = cast(x * cos[p] + rotate_half(x) * sin[p])   (rope.h)
//     cache_v[h, p] = scratch_v[h, r]
// One thread block per (i, h); thread t handles the element pairs (c, c + half), c = t, t + T, ...
// The wipe of the scratch is left to the caller (a plain fill on the same stream).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "vxl_fast/float_cast.cuh"
#include "vxl_fast/launch.cuh"
#include "vxl_fast/rope.h"

namespace vxl_fast {

// Element strides; the last dimension of every tensor is contiguous.
template <typename T>
struct KvDiscardParams {
  T* cache_k;  // [Hkv, C, d]
  T* cache_v;  // [Hkv, C, d]
  const T* scratch_k;  // [Hkv, R, d]
  const T* scratch_v;  // [Hkv, R, d]
  const int64_t* vst_index;  // [nb]
  const float* cos;  // [P, d]
  const float* sin;  // [P, d]
  int64_t cache_k_stride_h, cache_k_stride_row;
  int64_t cache_v_stride_h, cache_v_stride_row;
  int64_t scratch_k_stride_h, scratch_k_stride_row;
  int64_t scratch_v_stride_h, scratch_v_stride_row;
  int64_t vst_index_stride, cos_stride_row, sin_stride_row;
  int64_t heads, nb, half, dst;
};

template <typename T>
__global__ void kv_discard_kernel(const KvDiscardParams<T> p) {
  const int64_t i = blockIdx.x;
  const int64_t h = blockIdx.y;
  const int64_t row = p.vst_index[i * p.vst_index_stride];
  const int64_t pos = p.dst + i;
  const T* xk = p.scratch_k + h * p.scratch_k_stride_h + row * p.scratch_k_stride_row;
  const T* xv = p.scratch_v + h * p.scratch_v_stride_h + row * p.scratch_v_stride_row;
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
cudaError_t launch_kv_discard(const KvDiscardParams<T>& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.nb), static_cast<unsigned>(p.heads));
  VXL_LAUNCH(kv_discard_kernel<T>, grid, threads_for(p.half), 0, stream)(p);
  return cudaGetLastError();
}

}  // namespace vxl_fast
