// CPU impl of vxl_fast::yuv420_to_rgb: one task per band of output rows (include/vxl_fast/
// yuv_to_rgb.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "checks.h"
#include "vxl_fast/yuv_to_rgb.h"

namespace vxl_fast {
namespace {

YuvPlane plane_of(const at::Tensor& t) {
  return YuvPlane{t.const_data_ptr<uint8_t>(), t.stride(0), t.stride(1), t.stride(2)};
}

at::Tensor yuv420_to_rgb_cpu(const at::Tensor& y, const at::Tensor& u, const at::Tensor& v,
                             int64_t matrix, bool full_range) {
  check_yuv420_to_rgb(y, u, v, matrix);
  at::Tensor out = at::empty({y.size(0), y.size(1), y.size(2), 3}, y.options());
  const YuvToRgbParams p{plane_of(y), plane_of(u), plane_of(v), out.mutable_data_ptr<uint8_t>(),
                         y.size(1), y.size(2), yuv_to_rgb_coeffs(matrix, full_range)};
  const int64_t rows = y.size(0) * y.size(1);
  // NOTE: rows per task such that a task converts at least ~256k pixels (~1 ms): a frame up to
  // 640x360 stays on the calling thread, where decoder threads call it one frame at a time
  // (with more tasks, OpenMP's fork/join cost ~10 ms a call on 2 busy cores).
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / p.width);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      yuv_to_rgb_row(p, yuv_row(p, row));
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("yuv420_to_rgb", &yuv420_to_rgb_cpu); }

}  // namespace vxl_fast
