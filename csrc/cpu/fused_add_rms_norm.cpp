// CPU impl of vxl_fast::fused_add_rms_norm: one task per row range, the kernel's sum order
// (rms_norm.h), so the CPU impl and the CUDA kernel agree bit for bit.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "cpu/add_norm_rows.h"
#include "dispatch.h"
#include "vxl_fast/rms_norm.h"

namespace vxl_fast {
namespace {

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm_cpu(const at::Tensor& x,
                                                          const at::Tensor& residual,
                                                          const at::Tensor& weight, double eps) {
  check_fused_add_rms_norm(x, residual, weight, eps);
  std::tuple<at::Tensor, at::Tensor> result;
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "fused_add_rms_norm", [&] {
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    const int64_t d = x.size(-1);
    const float e = static_cast<float>(eps);
    result = add_norm_rows<scalar_t>(x, residual, [&](const scalar_t* xr, const scalar_t* rr,
                                                      scalar_t* h, scalar_t* y) {
      add_rms_norm_row(xr, rr, w, d, e, h, y);
    });
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("fused_add_rms_norm", &fused_add_rms_norm_cpu); }

}  // namespace vxl_fast
