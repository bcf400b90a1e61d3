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
      const T* xr = xs + row * x_stride;
      const T* rr = rs + row * r_stride;
      T* h = hs + row * d;
      T* y = ys + row * d;
      float sums[kNormLanes] = {};
      for (int64_t i = 0; i < d; ++i) {
        h[i] = static_cast<T>(norm_add(static_cast<float>(rr[i]), static_cast<float>(xr[i])));
        float& s = sums[norm_lane(i)];
        s = norm_add(s, static_cast<float>(h[i]));
      }
      const float mean = row_mean(butterfly_sum(sums), d);
      float squares[kNormLanes] = {};
      for (int64_t i = 0; i < d; ++i) {
        const float dev = norm_sub(static_cast<float>(h[i]), mean);
        float& s = squares[norm_lane(i)];
        s = norm_add(s, norm_mul(dev, dev));
      }
      const float rstd = inv_rms(butterfly_sum(squares), d, eps);
      for (int64_t i = 0; i < d; ++i) {
        const float dev = norm_sub(static_cast<float>(h[i]), mean);
        y[i] = static_cast<T>(
            layer_norm_affine(dev, rstd, static_cast<float>(w[i]), static_cast<float>(b[i])));
      }
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
