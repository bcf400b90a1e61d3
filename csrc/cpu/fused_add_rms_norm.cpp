// CPU impl of vxl_fast::fused_add_rms_norm: one task per row range, the kernel's sum order
// (rms_norm.h), so the CPU impl and the CUDA kernel agree bit for bit.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "checks.h"
#include "dispatch.h"
#include "vxl_fast/rms_norm.h"

namespace vxl_fast {
namespace {

template <typename T>
void add_rms_norm_rows(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                       float eps, const at::Tensor& out, const at::Tensor& residual_out) {
  const int64_t rows = x.size(0);
  const int64_t d = x.size(1);
  const T* xs = x.const_data_ptr<T>();
  const T* rs = residual.const_data_ptr<T>();
  const T* w = weight.const_data_ptr<T>();
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
      float partial[kNormLanes] = {};
      for (int64_t i = 0; i < d; ++i) {
        h[i] = static_cast<T>(norm_add(static_cast<float>(rr[i]), static_cast<float>(xr[i])));
        const float hf = static_cast<float>(h[i]);
        float& p = partial[norm_lane(i)];
        p = norm_add(p, norm_mul(hf, hf));
      }
      const float r = inv_rms(butterfly_sum(partial), d, eps);
      for (int64_t i = 0; i < d; ++i) {
        const float normed = static_cast<float>(static_cast<T>(norm_mul(static_cast<float>(h[i]), r)));
        y[i] = static_cast<T>(norm_mul(static_cast<float>(w[i]), normed));
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm_cpu(const at::Tensor& x,
                                                          const at::Tensor& residual,
                                                          const at::Tensor& weight, double eps) {
  check_fused_add_rms_norm(x, residual, weight, eps);
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor residual_out = at::empty(x.sizes(), x.options());
  const int64_t d = x.size(-1);
  const at::Tensor x2 = x.reshape({-1, d});
  const at::Tensor r2 = residual.reshape({-1, d});
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "fused_add_rms_norm", [&] {
    add_rms_norm_rows<scalar_t>(x2, r2, weight, static_cast<float>(eps), out, residual_out);
  });
  return {out, residual_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("fused_add_rms_norm", &fused_add_rms_norm_cpu); }

}  // namespace vxl_fast
