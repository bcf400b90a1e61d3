// CPU impl of vxl_fast::clip_preprocess(_out): Pillow's integer resampling of the crop window
// only (include/vxl_fast/clip_preprocess.h), one task per band of output rows of one frame.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

#include "checks.h"
#include "dispatch.h"
#include "vxl_fast/clip_preprocess.h"

namespace vxl_fast {
namespace {

// A uint8 [rows, cols, 3] image: element (r, x, c) at data[r * row_stride + x * pixel_stride + c].
struct Pixels {
  const uint8_t* data;
  int64_t row_stride, pixel_stride;
};

// One row of Pillow's horizontal pass: dst[3 i + c] for the outputs i of `taps`, from `row`
// (source column s at row + (s - origin) * pixel_stride).
void horizontal_row(const uint8_t* row, int64_t pixel_stride, int64_t origin, const PilTaps& taps,
                    uint8_t* dst) {
  const int32_t bias = int32_t{1} << (kPilPrecisionBits - 1);
  const int64_t count = static_cast<int64_t>(taps.start.size());
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* p = row + (taps.start[i] - origin) * pixel_stride;
    const int32_t* w = taps.weight.data() + i * taps.taps;
    int32_t s0 = bias, s1 = bias, s2 = bias;
    for (int32_t j = 0; j < taps.n[i]; ++j, p += pixel_stride) {
      s0 += p[0] * w[j];
      s1 += p[1] * w[j];
      s2 += p[2] * w[j];
    }
    dst[3 * i] = pil_clip8(s0);
    dst[3 * i + 1] = pil_clip8(s1);
    dst[3 * i + 2] = pil_clip8(s2);
  }
}

// Output row y of Pillow's vertical pass over columns [0, cols) of src (source row s at
// src.data + (s - origin) * row_stride): dst[3 x + c]. acc: scratch of 3 cols int32.
void vertical_row(const Pixels& src, int64_t origin, const PilTaps& taps, int64_t y, int64_t cols,
                  int32_t* __restrict acc, uint8_t* dst) {
  std::fill(acc, acc + 3 * cols, int32_t{1} << (kPilPrecisionBits - 1));
  const int32_t* w = taps.weight.data() + y * taps.taps;
  for (int32_t j = 0; j < taps.n[y]; ++j) {
    const uint8_t* row = src.data + (taps.start[y] + j - origin) * src.row_stride;
    const int32_t wj = w[j];
    if (src.pixel_stride == 3) {
      for (int64_t i = 0; i < 3 * cols; ++i) {
        acc[i] += row[i] * wj;
      }
    } else {
      for (int64_t x = 0; x < cols; ++x) {
        for (int64_t c = 0; c < 3; ++c) {
          acc[3 * x + c] += row[x * src.pixel_stride + c] * wj;
        }
      }
    }
  }
  for (int64_t i = 0; i < 3 * cols; ++i) {
    dst[i] = pil_clip8(acc[i]);
  }
}

// Normalises row y of frame t's crop pixels [crop, 3] into out as `layout` says: runs of
// layout.patch consecutive x per channel.
template <typename T>
void store_row(const uint8_t* pixels, const std::array<std::array<float, 256>, 3>& lut, T* out,
               const ClipLayout& layout, int64_t t, int64_t y, int64_t crop) {
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t x0 = 0; x0 < crop; x0 += layout.patch) {
      T* run = out + layout.index(t, c, y, x0);
      for (int64_t k = 0; k < layout.patch; ++k) {
        run[k] = static_cast<T>(lut[c][pixels[3 * (x0 + k) + c]]);
      }
    }
  }
}

template <typename T>
void clip_preprocess_frames(const at::Tensor& frames, int64_t size, int64_t crop,
                            c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev,
                            int64_t patch, at::Tensor& out) {
  const int64_t n_frames = frames.size(0);
  const auto plan = cached_clip_plan(frames.size(1), frames.size(2), size, crop);
  const ClipPlan& p = *plan;
  // The float32 result of each (channel, pixel value).
  std::array<std::array<float, 256>, 3> lut;
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      lut[c][v] = clip_normalize(static_cast<uint8_t>(v), static_cast<float>(mean[c]),
                                 static_cast<float>(stdev[c]));
    }
  }
  const uint8_t* frames_data = frames.const_data_ptr<uint8_t>();
  T* out_data = out.mutable_data_ptr<T>();
  const ClipLayout layout = clip_layout(crop, patch, out.strides().data());
  // NOTE: bands of output rows give T = 1 parallelism too; with the horizontal pass first, each
  // band resamples the source rows it reads, so neighbouring bands redo a few rows. Whole frames
  // when there are enough of them.
  const int64_t threads = at::get_num_threads();
  const int64_t bands = n_frames >= 2 * threads
                            ? 1
                            : std::clamp<int64_t>((4 * threads + n_frames - 1) / n_frames, 1,
                                                  std::max<int64_t>(1, crop / 16));
  const int64_t band_rows = (crop + bands - 1) / bands;
  const int64_t cols = p.col1 - p.col0;
  at::parallel_for(0, n_frames * bands, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> tmp, line(3 * std::max(crop, cols)), pixels(3 * crop);
    std::vector<int32_t> acc(3 * std::max(crop, cols));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / bands;
      const int64_t y_begin = (task % bands) * band_rows;
      const int64_t y_end = std::min(crop, y_begin + band_rows);
      const uint8_t* frame = frames_data + t * frames.stride(0);
      const int64_t row_stride = frames.stride(1), pixel_stride = frames.stride(2);
      if (!p.horizontal) {
        const Pixels src{frame + p.left * pixel_stride, row_stride, pixel_stride};
        for (int64_t y = y_begin; y < y_end; ++y) {
          vertical_row(src, 0, p.vert, y, crop, acc.data(), pixels.data());
          store_row(pixels.data(), lut, out_data, layout, t, y, crop);
        }
      } else if (p.vertical_first) {
        const Pixels src{frame + p.col0 * pixel_stride, row_stride, pixel_stride};
        for (int64_t y = y_begin; y < y_end; ++y) {
          vertical_row(src, 0, p.vert, y, cols, acc.data(), line.data());
          horizontal_row(line.data(), 3, p.col0, p.horiz, pixels.data());
          store_row(pixels.data(), lut, out_data, layout, t, y, crop);
        }
      } else if (y_begin < y_end) {
        int64_t r0 = p.vert.start[y_begin], r1 = 0;
        for (int64_t y = y_begin; y < y_end; ++y) {
          r0 = std::min<int64_t>(r0, p.vert.start[y]);
          r1 = std::max<int64_t>(r1, p.vert.start[y] + p.vert.n[y]);
        }
        tmp.resize((r1 - r0) * crop * 3);
        for (int64_t r = r0; r < r1; ++r) {
          horizontal_row(frame + r * row_stride, pixel_stride, 0, p.horiz,
                         tmp.data() + (r - r0) * crop * 3);
        }
        const Pixels src{tmp.data(), 3 * crop, 3};
        for (int64_t y = y_begin; y < y_end; ++y) {
          vertical_row(src, r0, p.vert, y, crop, acc.data(), pixels.data());
          store_row(pixels.data(), lut, out_data, layout, t, y, crop);
        }
      }
    }
  });
}

void run_clip_preprocess(const at::Tensor& frames, int64_t size, int64_t crop,
                         c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev, int64_t patch,
                         at::Tensor& out) {
  VXL_DISPATCH_FLOAT_TYPES(out.scalar_type(), "clip_preprocess", [&] {
    clip_preprocess_frames<scalar_t>(frames, size, crop, mean, stdev, patch, out);
  });
}

at::Tensor clip_preprocess_cpu(const at::Tensor& frames, int64_t size, int64_t crop,
                               c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev,
                               c10::ScalarType dtype, int64_t patch) {
  check_clip_preprocess(frames, size, crop, mean, stdev, patch);
  check_clip_preprocess_dtype(dtype);
  at::Tensor out = at::empty(clip_preprocess_shape(frames.size(0), crop, patch),
                             frames.options().dtype(dtype));
  run_clip_preprocess(frames, size, crop, mean, stdev, patch, out);
  return out;
}

void clip_preprocess_out_cpu(const at::Tensor& frames, int64_t size, int64_t crop,
                             c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev,
                             at::Tensor& out, int64_t patch) {
  check_clip_preprocess_out(frames, size, crop, mean, stdev, out, patch);
  run_clip_preprocess(frames, size, crop, mean, stdev, patch, out);
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) {
  m.impl("clip_preprocess", &clip_preprocess_cpu);
  m.impl("clip_preprocess_out", &clip_preprocess_out_cpu);
}

}  // namespace vxl_fast
