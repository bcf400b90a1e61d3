// CUDA kernel for fused_add_rms_norm: one warp per row, no block barriers (rms_norm.h has the math
// and the order of the sum).
//
// Lane l takes the chunks c = l, l + 32, ... of kChunk elements: first pass h = T(residual + x),
// stored to residual_out, and the lane's sum of squares; a butterfly of warp shuffles gives every
// lane the row's sum; second pass reads h back and writes normed. Rows whose chunks are all
// 16-byte aligned (kVector) are read and written in vector accesses.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "vxl_fast/chunk.cuh"
#include "vxl_fast/float_cast.cuh"
#include "vxl_fast/launch.cuh"
#include "vxl_fast/rms_norm.h"

namespace vxl_fast {

static_assert(kChunk == kNormChunk, "the kernel's chunks must be the sum order's chunks");

inline constexpr int kNormWarpsPerBlock = 4;
inline constexpr int kNormThreads = kNormWarpsPerBlock * kNormLanes;

// Blocks for `rows` rows, one warp each.
inline unsigned norm_blocks(int64_t rows) {
  return static_cast<unsigned>((rows + kNormWarpsPerBlock - 1) / kNormWarpsPerBlock);
}

// The row of the calling thread's warp, and its lane in it.
__device__ __forceinline__ int64_t norm_warp_row() {
  return static_cast<int64_t>(blockIdx.x) * (blockDim.x / kNormLanes) + threadIdx.x / kNormLanes;
}

__device__ __forceinline__ int norm_warp_lane() {
  return static_cast<int>(threadIdx.x % kNormLanes);
}

// The sum of every lane's `value`, in every lane (the butterfly of rms_norm.h).
__device__ __forceinline__ float warp_butterfly_sum(float value) {
  for (int o = kNormLanes / 2; o > 0; o /= 2) {
    value = norm_add(value, __shfl_xor_sync(0xffffffffu, value, o));
  }
  return value;
}

// Element strides of the rows; last dimensions are contiguous, outputs are contiguous [rows, d].
template <typename T>
struct AddRmsNormParams {
  T* out;  // [rows, d]
  T* residual_out;  // [rows, d]
  const T* x;  // [rows, d], row stride x_stride
  const T* residual;  // [rows, d], row stride residual_stride
  const T* weight;  // [d]
  int64_t rows, d, x_stride, residual_stride;
  float eps;
};

template <typename T, bool kVector>
__global__ void add_rms_norm_kernel(const AddRmsNormParams<T> p) {
  const int lane = norm_warp_lane();
  const int64_t row = norm_warp_row();
  if (row >= p.rows) {
    return;  // NOTE: a whole warp: its lanes share the row
  }
  const T* x = p.x + row * p.x_stride;
  const T* residual = p.residual + row * p.residual_stride;
  T* h_out = p.residual_out + row * p.d;
  T* out = p.out + row * p.d;
  float sum = 0.0f;
  for (int64_t i0 = static_cast<int64_t>(lane) * kChunk; i0 < p.d; i0 += kNormLanes * kChunk) {
    const int64_t n = p.d - i0 < kChunk ? p.d - i0 : kChunk;
    T xv[kChunk] = {}, rv[kChunk] = {}, hv[kChunk] = {};
    load_chunk<kVector>(x + i0, n, xv);
    load_chunk<kVector>(residual + i0, n, rv);
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        hv[j] = from_float<T>(norm_add(to_float(rv[j]), to_float(xv[j])));
        const float hf = to_float(hv[j]);
        sum = norm_add(sum, norm_mul(hf, hf));
      }
    }
    store_chunk<kVector>(h_out + i0, n, hv);
  }
  const float r = inv_rms(warp_butterfly_sum(sum), p.d, p.eps);
  for (int64_t i0 = static_cast<int64_t>(lane) * kChunk; i0 < p.d; i0 += kNormLanes * kChunk) {
    const int64_t n = p.d - i0 < kChunk ? p.d - i0 : kChunk;
    T hv[kChunk] = {}, wv[kChunk] = {}, yv[kChunk] = {};
    load_chunk<kVector>(h_out + i0, n, hv);  // this lane's own stores
    load_chunk<kVector>(p.weight + i0, n, wv);
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        const float normed = to_float(from_float<T>(norm_mul(to_float(hv[j]), r)));
        yv[j] = from_float<T>(norm_mul(to_float(wv[j]), normed));
      }
    }
    store_chunk<kVector>(out + i0, n, yv);
  }
}

// Requires 1 <= rows <= 2^31 * kNormWarpsPerBlock and d >= 1; out and residual_out contiguous.
template <typename T>
cudaError_t launch_add_rms_norm(const AddRmsNormParams<T>& p, cudaStream_t stream) {
  const bool vector = chunk_aligned<T>(p.x, p.x_stride, p.d) &&
                      chunk_aligned<T>(p.residual, p.residual_stride, p.d) &&
                      chunk_aligned<T>(p.weight, 0, p.d) && chunk_aligned<T>(p.out, p.d, p.d) &&
                      chunk_aligned<T>(p.residual_out, p.d, p.d);
  const auto kernel = vector ? add_rms_norm_kernel<T, true> : add_rms_norm_kernel<T, false>;
  VXL_LAUNCH(kernel, norm_blocks(p.rows), kNormThreads, 0, stream)(p);
  return cudaGetLastError();
}

}  // namespace vxl_fast
