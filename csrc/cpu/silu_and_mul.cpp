// CPU impl of vxl_fast::silu_and_mul: one task per row range, the kernel's per-element math
// (silu_and_mul.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "checks.h"
#include "dispatch.h"
#include "vxl_fast/silu_and_mul.h"

namespace vxl_fast {
namespace {

template <typename T>
void silu_and_mul_rows(const at::Tensor& x, const at::Tensor& out) {
  const int64_t rows = x.size(0);
  const int64_t width = x.size(1) / 2;
  const T* xs = x.const_data_ptr<T>();
  T* ys = out.mutable_data_ptr<T>();
  const int64_t stride = x.stride(0);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, width));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* gate = xs + row * stride;
      const T* up = gate + width;
      T* y = ys + row * width;
      for (int64_t i = 0; i < width; ++i) {
        const float s = static_cast<float>(static_cast<T>(silu(static_cast<float>(gate[i]))));
        y[i] = static_cast<T>(gated_mul(s, static_cast<float>(up[i])));
      }
    }
  });
}

at::Tensor silu_and_mul_cpu(const at::Tensor& x) {
  check_silu_and_mul(x);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() /= 2;
  at::Tensor out = at::empty(shape, x.options());
  const at::Tensor x2 = x.reshape({-1, x.size(-1)});
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "silu_and_mul",
                           [&] { silu_and_mul_rows<scalar_t>(x2, out); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("silu_and_mul", &silu_and_mul_cpu); }

}  // namespace vxl_fast
