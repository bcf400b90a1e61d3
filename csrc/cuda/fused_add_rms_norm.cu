// CUDA impl of vxl_fast::fused_add_rms_norm (kernel: include/vxl_fast/rms_norm.cuh).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "dispatch.h"
#include "cuda/add_norm_launch.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/rms_norm.cuh"

namespace vxl_fast {
namespace {

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm_cuda(const at::Tensor& x,
                                                           const at::Tensor& residual,
                                                           const at::Tensor& weight, double eps) {
  check_fused_add_rms_norm(x, residual, weight, eps);
  std::tuple<at::Tensor, at::Tensor> result;
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "fused_add_rms_norm", [&] {
    using T = typename CudaType<scalar_t>::type;
    AddRmsNormParams<T> p;
    p.weight = static_cast<const T*>(weight.const_data_ptr());
    p.eps = static_cast<float>(eps);
    result = add_norm_launch<T>(x, residual, p, "fused_add_rms_norm", launch_add_rms_norm<T>);
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("fused_add_rms_norm", &fused_add_rms_norm_cuda); }

}  // namespace vxl_fast
