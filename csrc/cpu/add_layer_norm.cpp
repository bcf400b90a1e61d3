// CPU impl of vxl_fast::add_layer_norm: one task per row range, the kernel's order of the sums
// (layer_norm.h), so the CPU impl and the CUDA kernel agree bit for bit.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "cpu/add_norm_rows.h"
#include "dispatch.h"
#include "vxl_fast/layer_norm.h"

namespace vxl_fast {
namespace {

std::tuple<at::Tensor, at::Tensor> add_layer_norm_cpu(const at::Tensor& x, const at::Tensor& residual,
                                                      const at::Tensor& weight, const at::Tensor& bias,
                                                      double eps) {
  check_add_layer_norm(x, residual, weight, bias, eps);
  std::tuple<at::Tensor, at::Tensor> result;
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "add_layer_norm", [&] {
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    const scalar_t* b = bias.const_data_ptr<scalar_t>();
    const int64_t d = x.size(-1);
    const float e = static_cast<float>(eps);
    result = add_norm_rows<scalar_t>(x, residual, [&](const scalar_t* xr, const scalar_t* rr,
                                                      scalar_t* h, scalar_t* y) {
      add_layer_norm_row(xr, rr, w, b, d, e, h, y);
    });
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("add_layer_norm", &add_layer_norm_cpu); }

}  // namespace vxl_fast
