// CUDA kernel for yuv420_to_rgb: one thread block per output row (t, r) of the batch, threads
// strided over its columns, each pixel as yuv_to_rgb.h computes it (integer arithmetic only, so
// the result equals the CPU impl and swscale bit for bit).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "vxl_fast/launch.cuh"
#include "vxl_fast/yuv_to_rgb.h"

namespace vxl_fast {

__global__ void yuv420_to_rgb_kernel(YuvToRgbParams p, int64_t rows) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const YuvRow src = yuv_row(p, row);
    for (int64_t x = threadIdx.x; x < p.width; x += blockDim.x) {
      yuv_to_rgb_pixel_at(p, src, x);
    }
  }
}

// p.out: T * H rows of W RGB pixels. Requires T, H, W >= 1.
inline cudaError_t launch_yuv420_to_rgb(const YuvToRgbParams& p, int64_t n_frames,
                                        cudaStream_t stream) {
  const int64_t rows = n_frames * p.height;
  const int64_t blocks = std::min<int64_t>(rows, kMaxBlocks);
  VXL_LAUNCH(yuv420_to_rgb_kernel, static_cast<unsigned>(blocks), threads_for(p.width), 0,
             stream)(p, rows);
  return cudaGetLastError();
}

}  // namespace vxl_fast
