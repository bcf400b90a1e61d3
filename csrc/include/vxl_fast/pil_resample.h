// Pillow's 8-bit bicubic resampling (libImaging/Resample.c), bit for bit: the fixed-point weights
// of one separable pass, computed on the host, and the rounding of a weighted sum.
//
// For output sample i of a pass from in_size to out_size samples, in float64:
//     scale = in_size / out_size, filterscale = max(scale, 1), support = 2 filterscale
//     center = (i + 0.5) scale
//     start = max(int(center - support + 0.5), 0)
//     n = min(int(center + support + 0.5), in_size) - start
//     w[j] = bicubic((start + j - center + 0.5) / filterscale) / sum_j(...),  j < n   (a = -0.5)
// each weight then becomes int32(w 2^22 ± 0.5) (truncated; the sign of w), and the sample is
//     clip8(2^21 + sum_j pixel[start + j] * weight[j])   in int32 (no overflow: |sum| < 2^31).
// A pass whose size does not change is skipped by Pillow; here it is the identity: one tap of
// weight 2^22. The passes run horizontal first unless pil_vertical_first (the image in between is
// rounded to uint8, so the order matters). The Python twin is python/vxl_fast/ops/pil_resize.py.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vxl_fast/host_device.h"

namespace vxl_fast {

// 32 - 8 - 2: 8 bits of result, 2 bits of headroom for weights summing past 1 or below 0.
inline constexpr int kPilPrecisionBits = 22;

// Pillow's clip8: the weighted sum (with its 2^21 rounding bias) back to a uint8.
VXL_HOST_DEVICE uint8_t pil_clip8(int32_t sum) {
  const int32_t v = sum >> kPilPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Whether Pillow 13 runs the vertical pass first: when the height shrinks by more than twice as
// many pixels as the width does (python-pillow/Pillow#9549; the exact rule was read off Pillow
// 13.0.0's output). Pillow <= 12 always runs the horizontal pass first.
inline bool pil_vertical_first(int64_t in_height, int64_t in_width, int64_t out_height,
                               int64_t out_width) {
  return out_height < in_height && in_height - out_height > 2 * (in_width - out_width);
}

// (out_height, out_width): the short side becomes `size`, the long side int(size * long / short)
// (a correctly rounded float64 quotient, truncated), as CLIPImageProcessor does.
struct ResizedShape {
  int64_t height, width;
};

inline ResizedShape resized_shortest_edge(int64_t height, int64_t width, int64_t size) {
  if (width <= height) {
    return {static_cast<int64_t>(static_cast<double>(size * height) / static_cast<double>(width)),
            size};
  }
  return {size,
          static_cast<int64_t>(static_cast<double>(size * width) / static_cast<double>(height))};
}

// The weights of output samples first .. first + count - 1 of one pass.
struct PilTaps {
  int64_t taps = 0;  // weights per output sample (zero-padded)
  std::vector<int32_t> start;  // [count] first input sample of each output sample
  std::vector<int32_t> n;  // [count] input samples read, n <= taps, start + n <= in_size
  std::vector<int32_t> weight;  // [count, taps] fixed point, 2^22 = 1
};

namespace detail {

inline double pil_bicubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) {
    x = -x;
  }
  if (x < 1.0) {
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  }
  if (x < 2.0) {
    return (((x - 5) * x + 8) * x - 4) * a;
  }
  return 0.0;
}

}  // namespace detail

// NOTE: the float64 expressions keep Pillow's operation order; built without FMA contraction
// (x86-64 has none by default; the weights are never computed on the device).
inline PilTaps pil_bicubic_taps(int64_t in_size, int64_t out_size, int64_t first, int64_t count) {
  PilTaps t;
  t.start.resize(count);
  t.n.resize(count);
  if (in_size == out_size) {
    t.taps = 1;
    t.weight.assign(count, int32_t{1} << kPilPrecisionBits);
    for (int64_t i = 0; i < count; ++i) {
      t.start[i] = static_cast<int32_t>(first + i);
      t.n[i] = 1;
    }
    return t;
  }
  // NOTE: Pillow receives the source box as C floats: (in1 - in0) is a float, then a double.
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  t.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.weight.assign(count * t.taps, 0);
  const double inv_filterscale = 1.0 / filterscale;
  const double one = static_cast<double>(int64_t{1} << kPilPrecisionBits);
  std::vector<double> k(t.taps);
  for (int64_t i = 0; i < count; ++i) {
    const double center = (static_cast<double>(first + i) + 0.5) * scale;
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t xmax = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size);
    const int64_t n = xmax - xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < n; ++x) {
      k[x] = detail::pil_bicubic((static_cast<double>(x + xmin) - center + 0.5) * inv_filterscale);
      ww += k[x];
    }
    int32_t* w = t.weight.data() + i * t.taps;
    for (int64_t x = 0; x < n; ++x) {
      const double kx = ww != 0.0 ? k[x] / ww : k[x];
      w[x] = static_cast<int32_t>(kx < 0 ? -0.5 + kx * one : 0.5 + kx * one);
    }
    t.start[i] = static_cast<int32_t>(xmin);
    t.n[i] = static_cast<int32_t>(n);
  }
  return t;
}

}  // namespace vxl_fast
