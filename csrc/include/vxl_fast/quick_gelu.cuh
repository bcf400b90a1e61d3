// CUDA kernel for bias_quick_gelu: out[r, i] = quick_gelu(T(x[r, i] + bias[i])) rounded step by step
// as quick_gelu.h gives it. A thread per chunk of kChunk elements of a row, grid-stride over all
// rows' chunks; rows whose chunks are all 16-byte aligned (kVector) are read and written in vector
// accesses.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "vxl_fast/chunk.cuh"
#include "vxl_fast/float_cast.cuh"
#include "vxl_fast/launch.cuh"
#include "vxl_fast/quick_gelu.h"

namespace vxl_fast {

template <typename T>
struct BiasQuickGeluParams {
  T* out;  // [rows, width] contiguous
  const T* x;  // [rows, width], row stride x_stride elements, last dim contiguous
  const T* bias;  // [width]
  int64_t rows, width, x_stride;
};

template <typename T, bool kVector>
__global__ void bias_quick_gelu_kernel(const BiasQuickGeluParams<T> p) {
  for_each_chunk(p.rows, p.width, [&](int64_t row, int64_t i0, int64_t n) {
    T xv[kChunk] = {}, bv[kChunk] = {}, yv[kChunk] = {};
    load_chunk<kVector>(p.x + row * p.x_stride + i0, n, xv);
    load_chunk<kVector>(p.bias + i0, n, bv);
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        const float h = to_float(from_float<T>(bias_add(to_float(xv[j]), to_float(bv[j]))));
        const float t = to_float(from_float<T>(quick_gelu_arg(h)));
        const float s = to_float(from_float<T>(sigmoid(t)));
        yv[j] = from_float<T>(gate_product(h, s));
      }
    }
    store_chunk<kVector>(p.out + row * p.width + i0, n, yv);
  });
}

// Requires rows >= 1, width >= 1.
template <typename T>
cudaError_t launch_bias_quick_gelu(const BiasQuickGeluParams<T>& p, cudaStream_t stream) {
  const bool vector = chunk_aligned<T>(p.x, p.x_stride, p.width) &&
                      chunk_aligned<T>(p.bias, 0, p.width) &&
                      chunk_aligned<T>(p.out, p.width, p.width);
  const auto kernel = vector ? bias_quick_gelu_kernel<T, true> : bias_quick_gelu_kernel<T, false>;
  VXL_LAUNCH(kernel, chunk_blocks(p.rows, p.width), kMaxThreads, 0, stream)(p);
  return cudaGetLastError();
}

}  // namespace vxl_fast
