// CPU impl of vxl_fast::add_layer_norm: one task per row range, the kernel's order of the sums
// (layer_norm.h), so the CPU impl and the CUDA kernel agree bit for bit.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "checks.h"
#include "dispatch.h"
#include "vxl_fast/layer_norm.h"

namespace vxl_fast {
namespace {

template <typename T>
void add_layer_norm_rows(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                         const at::Tensor& bias, float eps, const at::Tensor& out,
                         const at::Tensor& residual_out) {
  const int64_t rows = x.size(0);
  const int64_t d = x.size(1);
  const T* xs = x.const_data_ptr<T>();
  const T* rs = residual.const_data_ptr<T>();
  const T* w = weight.const_data_ptr<T>();
  const T* b = bias.const_data_ptr<T>();
  T* ys = out.mutable_data_ptr<T>();
  T* hs = residual_out.mutable_data_ptr<T>();
  const int64_t x_stride = x.stride(0), r_stride = residual.stride(0);
  // NOTE: rows per task such that a task touches at least ~16K elements.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / d);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      add_layer_norm_row(xs + row * x_stride, rs + row * r_stride, w, b, d, eps, hs + row * d,
                         ys + row * d);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> add_layer_norm_cpu(const at::Tensor& x, const at::Tensor& residual,
                                                      const at::Tensor& weight, const at::Tensor& bias,
                                                      double eps) {
  check_add_layer_norm(x, residual, weight, bias, eps);
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor residual_out = at::empty(x.sizes(), x.options());
  const int64_t d = x.size(-1);
  const at::Tensor x2 = x.reshape({-1, d});
  const at::Tensor r2 = residual.reshape({-1, d});
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "add_layer_norm", [&] {
    add_layer_norm_rows<scalar_t>(x2, r2, weight, bias, static_cast<float>(eps), out, residual_out);
  });
  return {out, residual_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("add_layer_norm", &add_layer_norm_cpu); }

}  // namespace vxl_fast
