// CUDA kernels for clip_preprocess: Pillow's two bicubic passes over the crop window, integer
// arithmetic only, so the result equals the CPU impl and Pillow bit for bit (clip_preprocess.h).
//
// clip_pass_kernel<kVertical> runs one pass for output pixels (t, r, x), one thread block per
// (frame, output row r), a thread per (channel, column x):
//     vertical:   v = clip8(2^21 + sum_j src[t, start[r] + j - origin, x, c] * weight[r, j])
//     horizontal: v = clip8(2^21 + sum_j src[t, r, start[x] + j - origin, c] * weight[x, j])
// and hands v to a sink: ToPixels stores it in a uint8 [T, rows, cols, 3] buffer for the second
// pass, ToOutput normalises it and writes it where its ClipLayout puts (t, c, r, x), in the output
// dtype.
// launch_clip_preprocess chains one or two passes as the ClipPlan says.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "vxl_fast/clip_preprocess.h"
#include "vxl_fast/float_cast.cuh"
#include "vxl_fast/launch.cuh"

namespace vxl_fast {

// A PilTaps on the device: start [count], n [count], weight [count, taps].
struct DeviceTaps {
  const int32_t* start;
  const int32_t* n;
  const int32_t* weight;
  int64_t taps;
};

// uint8 pixels: (t, r, x, c) at data[t * frame_stride + r * row_stride + x * pixel_stride + c].
struct DevicePixels {
  const uint8_t* data;
  int64_t frame_stride, row_stride, pixel_stride;
};

struct ClipPassParams {
  DevicePixels src;
  int64_t origin;  // the source row (vertical) or column (horizontal) that src's index 0 holds
  DeviceTaps taps;  // one per output row (vertical) or column (horizontal)
  int64_t n_frames, rows, cols;  // the output extent
};

// Stores pass results in a contiguous uint8 [T, rows, cols, 3] buffer.
struct ToPixels {
  uint8_t* data;
  int64_t rows, cols;

  __device__ void operator()(int64_t t, int64_t r, int64_t x, int64_t c, uint8_t v) const {
    data[((t * rows + r) * cols + x) * 3 + c] = v;
  }
};

// Normalises pass results into out, laid out as `layout` says.
template <typename T>
struct ToOutput {
  T* out;
  ClipLayout layout;
  float mean[3], stdev[3];

  __device__ void operator()(int64_t t, int64_t r, int64_t x, int64_t c, uint8_t v) const {
    out[layout.index(t, c, r, x)] = from_float<T>(clip_normalize(v, mean[c], stdev[c]));
  }
};

template <bool kVertical, typename Sink>
__global__ void clip_pass_kernel(const ClipPassParams p, const Sink sink) {
  constexpr int32_t bias = int32_t{1} << (kPilPrecisionBits - 1);
  for (int64_t task = blockIdx.x; task < p.n_frames * p.rows; task += gridDim.x) {
    const int64_t t = task / p.rows;
    const int64_t r = task % p.rows;
    const uint8_t* frame = p.src.data + t * p.src.frame_stride;
    for (int64_t i = threadIdx.x; i < 3 * p.cols; i += blockDim.x) {
      const int64_t c = i / p.cols;
      const int64_t x = i % p.cols;
      const int64_t k = kVertical ? r : x;  // the output sample along the resampled axis
      const int64_t step = kVertical ? p.src.row_stride : p.src.pixel_stride;
      const uint8_t* px = frame + (p.taps.start[k] - p.origin) * step + c +
                          (kVertical ? x * p.src.pixel_stride : r * p.src.row_stride);
      const int32_t* w = p.taps.weight + k * p.taps.taps;
      const int32_t n = p.taps.n[k];
      int32_t s = bias;
      for (int32_t j = 0; j < n; ++j, px += step) {
        s += *px * w[j];
      }
      sink(t, r, x, c, pil_clip8(s));
    }
  }
}

// Requires n_frames, rows, cols >= 1.
template <bool kVertical, typename Sink>
cudaError_t launch_clip_pass(const ClipPassParams& p, const Sink& sink, cudaStream_t stream) {
  const int64_t blocks = std::min<int64_t>(p.n_frames * p.rows, kMaxBlocks);
  const auto kernel = clip_pass_kernel<kVertical, Sink>;
  VXL_LAUNCH(kernel, static_cast<unsigned>(blocks), threads_for(3 * p.cols), 0, stream)(p, sink);
  return cudaGetLastError();
}

// Bytes of the uint8 buffer that launch_clip_preprocess keeps between its two passes (0: one pass).
inline int64_t clip_scratch_bytes(const ClipPlan& p, int64_t n_frames, int64_t crop) {
  if (!p.horizontal) {
    return 0;
  }
  return n_frames * crop * (p.vertical_first ? p.col1 - p.col0 : p.row1 - p.row0) * 3;
}

// The passes of `plan` over frames (t, r, x, c) at data[t * s_t + r * s_r + x * s_x + c], the
// result handed to `sink`. horiz, vert: plan.horiz and plan.vert in device memory (horiz unused
// without a horizontal pass); scratch: clip_scratch_bytes(plan, n_frames, crop) bytes of device
// memory. Requires n_frames >= 1.
template <typename Sink>
cudaError_t launch_clip_preprocess(const ClipPlan& plan, const DeviceTaps& horiz,
                                   const DeviceTaps& vert, const uint8_t* data, int64_t s_t,
                                   int64_t s_r, int64_t s_x, int64_t n_frames, int64_t crop,
                                   const Sink& sink, uint8_t* scratch, cudaStream_t stream) {
  if (!plan.horizontal) {
    const ClipPassParams vp{DevicePixels{data + plan.left * s_x, s_t, s_r, s_x}, 0, vert, n_frames,
                            crop, crop};
    return launch_clip_pass<true>(vp, sink, stream);
  }
  cudaError_t err = cudaSuccess;
  if (plan.vertical_first) {
    // source columns [col0, col1) of the crop rows, then the horizontal pass
    const int64_t cols = plan.col1 - plan.col0;
    const ClipPassParams vp{DevicePixels{data + plan.col0 * s_x, s_t, s_r, s_x}, 0, vert,
                            n_frames, crop, cols};
    err = launch_clip_pass<true>(vp, ToPixels{scratch, crop, cols}, stream);
    if (err == cudaSuccess) {
      const ClipPassParams hp{DevicePixels{scratch, crop * cols * 3, cols * 3, 3}, plan.col0,
                              horiz, n_frames, crop, crop};
      err = launch_clip_pass<false>(hp, sink, stream);
    }
  } else {
    // the crop columns of source rows [row0, row1), then the vertical pass
    const int64_t rows = plan.row1 - plan.row0;
    const ClipPassParams hp{DevicePixels{data + plan.row0 * s_r, s_t, s_r, s_x}, 0, horiz,
                            n_frames, rows, crop};
    err = launch_clip_pass<false>(hp, ToPixels{scratch, rows, crop}, stream);
    if (err == cudaSuccess) {
      const ClipPassParams vp{DevicePixels{scratch, rows * crop * 3, crop * 3, 3}, plan.row0, vert,
                              n_frames, crop, crop};
      err = launch_clip_pass<true>(vp, sink, stream);
    }
  }
  return err;
}

}  // namespace vxl_fast
