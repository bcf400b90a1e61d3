// CUDA kernel for silu_and_mul: out[r, i] = T(float(T(silu(gate[r, i]))) * float(up[r, i])) with
// gate = x[r, :F], up = x[r, F:] (silu_and_mul.h). A thread per chunk of kChunk elements of a row,
// grid-stride over all rows' chunks; rows whose chunks are all 16-byte aligned (kVector) are read
// and written in vector accesses.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "vxl_fast/chunk.cuh"
#include "vxl_fast/float_cast.cuh"
#include "vxl_fast/launch.cuh"
#include "vxl_fast/silu_and_mul.h"

namespace vxl_fast {

template <typename T>
struct SiluAndMulParams {
  T* out;  // [rows, width] contiguous
  const T* x;  // [rows, 2 width], row stride x_stride elements, last dim contiguous
  int64_t rows, width, x_stride;
};

template <typename T, bool kVector>
__global__ void silu_and_mul_kernel(const SiluAndMulParams<T> p) {
  for_each_chunk(p.rows, p.width, [&](int64_t row, int64_t i0, int64_t n) {
    const T* gate = p.x + row * p.x_stride + i0;
    T gv[kChunk] = {}, uv[kChunk] = {}, yv[kChunk] = {};
    load_chunk<kVector>(gate, n, gv);
    load_chunk<kVector>(gate + p.width, n, uv);
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        const float s = to_float(from_float<T>(silu(to_float(gv[j]))));
        yv[j] = from_float<T>(gated_mul(s, to_float(uv[j])));
      }
    }
    store_chunk<kVector>(p.out + row * p.width + i0, n, yv);
  });
}

// Requires rows >= 1, width >= 1.
template <typename T>
cudaError_t launch_silu_and_mul(const SiluAndMulParams<T>& p, cudaStream_t stream) {
  const bool vector = chunk_aligned<T>(p.x, p.x_stride, p.width) &&
                      chunk_aligned<T>(p.x + p.width, p.x_stride, p.width) &&
                      chunk_aligned<T>(p.out, p.width, p.width);
  const auto kernel = vector ? silu_and_mul_kernel<T, true> : silu_and_mul_kernel<T, false>;
  VXL_LAUNCH(kernel, chunk_blocks(p.rows, p.width), kMaxThreads, 0, stream)(p);
  return cudaGetLastError();
}

}  // namespace vxl_fast
