// CPU impl of vxl_fast::bias_quick_gelu: one task per row range, the kernel's per-element math
// (quick_gelu.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "checks.h"
#include "dispatch.h"
#include "vxl_fast/quick_gelu.h"

namespace vxl_fast {
namespace {

template <typename T>
void bias_quick_gelu_rows(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& out) {
  const int64_t rows = x.size(0);
  const int64_t width = x.size(1);
  const T* xs = x.const_data_ptr<T>();
  const T* b = bias.const_data_ptr<T>();
  T* ys = out.mutable_data_ptr<T>();
  const int64_t stride = x.stride(0);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / width);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* xr = xs + row * stride;
      T* y = ys + row * width;
      for (int64_t i = 0; i < width; ++i) {
        const auto h = static_cast<float>(
            static_cast<T>(bias_add(static_cast<float>(xr[i]), static_cast<float>(b[i]))));
        const auto t = static_cast<float>(static_cast<T>(quick_gelu_arg(h)));
        const auto s = static_cast<float>(static_cast<T>(sigmoid(t)));
        y[i] = static_cast<T>(gate_product(h, s));
      }
    }
  });
}

at::Tensor bias_quick_gelu_cpu(const at::Tensor& x, const at::Tensor& bias) {
  check_bias_quick_gelu(x, bias);
  at::Tensor out = at::empty(x.sizes(), x.options());
  const at::Tensor x2 = x.reshape({-1, x.size(-1)});
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "bias_quick_gelu",
                           [&] { bias_quick_gelu_rows<scalar_t>(x2, bias, out); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("bias_quick_gelu", &bias_quick_gelu_cpu); }

}  // namespace vxl_fast
