// CLIP preprocessing of one frame, as CLIPImageProcessor (Pillow path) does it: bicubic resize of
// the short side to `size` (pil_resample.h), centre crop [top, top + crop) x [left, left + crop),
//     x = float32(float64(pixel) * (1 / 255)),   y = (x - mean[c]) / std[c]   (float32),
// written channel-first as [T, 3, crop, crop] or as patch rows (ClipLayout). Shared by the CPU impl
// and the CUDA kernels (clip_preprocess.cuh).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "vxl_fast/host_device.h"
#include "vxl_fast/pil_resample.h"

namespace vxl_fast {

// NOTE: on the device, the _rn intrinsics keep each step a separately rounded IEEE operation
// (no contraction, no approximate division), as numpy computes it.
VXL_HOST_DEVICE float clip_normalize(uint8_t pixel, float mean, float stdev) {
#if defined(__CUDA_ARCH__)
  const float x = __double2float_rn(__dmul_rn(static_cast<double>(pixel), 1.0 / 255.0));
  return __fdiv_rn(__fsub_rn(x, mean), stdev);
#else
  const float x = static_cast<float>(static_cast<double>(pixel) * (1.0 / 255.0));
  return (x - mean) / stdev;
#endif
}

// Where output element (t, c, y, x) goes, with p = patch:
//     t * frame + c * channel + (y / p) * grid_row + (y % p) * row + (x / p) * grid_col + x % p.
// Pixels [T, 3, crop, crop] are p = crop (one patch); patch rows [T, g * g, 3 p^2], g = crop / p,
// put the patch (y / p, x / p) in row (y / p) * g + x / p as [3, p, p]: the im2col of a stride-p,
// p x p convolution.
struct ClipLayout {
  int64_t patch, frame, channel, grid_row, row, grid_col;

  // NOTE: the divisions in 32 bits (y, x < crop < 2^31: the output has crop^2 elements per
  // channel), several times cheaper than 64-bit ones on a GPU.
  VXL_HOST_DEVICE int64_t index(int64_t t, int64_t c, int64_t y, int64_t x) const {
    const int32_t p = static_cast<int32_t>(patch);
    const int32_t yi = static_cast<int32_t>(y), xi = static_cast<int32_t>(x);
    return t * frame + c * channel + static_cast<int64_t>(yi / p) * grid_row +
           static_cast<int64_t>(yi % p) * row + static_cast<int64_t>(xi / p) * grid_col + xi % p;
  }
};

// The layout of an output with element strides `strides` (last dim contiguous): [T, 3, crop, crop]
// for patch 0, else [T, (crop / patch)^2, 3 patch^2] (strides[2] unused).
inline ClipLayout clip_layout(int64_t crop, int64_t patch, const int64_t* strides) {
  if (patch == 0) {
    return ClipLayout{crop, strides[0], strides[1], 0, strides[2], 0};
  }
  return ClipLayout{patch, strides[0], patch * patch, (crop / patch) * strides[1], patch,
                    strides[1]};
}

// Everything about one input size that does not depend on the pixels: the taps of the crop
// window's rows (vert) and columns (horiz), and the order of the passes.
//   - no horizontal pass (the width does not change): vertical pass over the frame's columns
//     [left, left + crop);
//   - horizontal first: source rows [row0, row1) -> [rows, crop] uint8, then the vertical pass;
//   - vertical first: source columns [col0, col1) -> [crop, cols] uint8, then the horizontal pass.
struct ClipPlan {
  int64_t out_height, out_width;  // after the resize
  int64_t top, left;  // of the crop window in the resized image
  bool horizontal;  // whether the width changes (Pillow's need_horizontal)
  bool vertical_first;  // with a horizontal pass: whether it comes second
  int64_t row0, row1;  // source rows the vertical pass reads
  int64_t col0, col1;  // source columns the horizontal pass reads
  PilTaps horiz;  // output columns left .. left + crop - 1 (empty without a horizontal pass)
  PilTaps vert;  // output rows top .. top + crop - 1
};

// [first, last) source samples that any of the outputs of `taps` reads.
inline void taps_range(const PilTaps& taps, int64_t& first, int64_t& last) {
  first = taps.start[0];
  last = 0;
  for (size_t i = 0; i < taps.start.size(); ++i) {
    first = std::min<int64_t>(first, taps.start[i]);
    last = std::max<int64_t>(last, taps.start[i] + taps.n[i]);
  }
}

inline ClipPlan make_clip_plan(int64_t height, int64_t width, int64_t size, int64_t crop) {
  ClipPlan p;
  const ResizedShape resized = resized_shortest_edge(height, width, size);
  p.out_height = resized.height;
  p.out_width = resized.width;
  p.top = (p.out_height - crop) / 2;
  p.left = (p.out_width - crop) / 2;
  p.horizontal = p.out_width != width;
  p.vertical_first =
      p.horizontal && pil_vertical_first(height, width, p.out_height, p.out_width);
  p.vert = pil_bicubic_taps(height, p.out_height, p.top, crop);
  taps_range(p.vert, p.row0, p.row1);
  p.col0 = p.left;
  p.col1 = p.left + crop;
  if (p.horizontal) {
    p.horiz = pil_bicubic_taps(width, p.out_width, p.left, crop);
    taps_range(p.horiz, p.col0, p.col1);
  }
  return p;
}

// make_clip_plan, computed once per (height, width, size, crop) and kept for the process.
inline std::shared_ptr<const ClipPlan> cached_clip_plan(int64_t height, int64_t width, int64_t size,
                                                        int64_t crop) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t>;
  static std::mutex mutex;
  static std::map<Key, std::shared_ptr<const ClipPlan>> plans;
  const Key key{height, width, size, crop};
  {
    const std::lock_guard<std::mutex> lock(mutex);
    const auto it = plans.find(key);
    if (it != plans.end()) {
      return it->second;
    }
  }
  auto plan = std::make_shared<const ClipPlan>(make_clip_plan(height, width, size, crop));
  const std::lock_guard<std::mutex> lock(mutex);
  // NOTE: a video has one frame size; a bound keeps a stream of odd sizes from growing the map.
  if (plans.size() >= 64) {
    plans.clear();
  }
  return plans.emplace(key, std::move(plan)).first->second;
}

}  // namespace vxl_fast
