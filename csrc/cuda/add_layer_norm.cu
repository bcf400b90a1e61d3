// CUDA impl of vxl_fast::add_layer_norm (kernel: include/vxl_fast/layer_norm.cuh).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "dispatch.h"
#include "cuda/add_norm_launch.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/layer_norm.cuh"

namespace vxl_fast {
namespace {

std::tuple<at::Tensor, at::Tensor> add_layer_norm_cuda(const at::Tensor& x, const at::Tensor& residual,
                                                       const at::Tensor& weight, const at::Tensor& bias,
                                                       double eps) {
  check_add_layer_norm(x, residual, weight, bias, eps);
  std::tuple<at::Tensor, at::Tensor> result;
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "add_layer_norm", [&] {
    using T = typename CudaType<scalar_t>::type;
    AddLayerNormParams<T> p;
    p.weight = static_cast<const T*>(weight.const_data_ptr());
    p.bias = static_cast<const T*>(bias.const_data_ptr());
    p.eps = static_cast<float>(eps);
    result = add_norm_launch<T>(x, residual, p, "add_layer_norm", launch_add_layer_norm<T>);
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("add_layer_norm", &add_layer_norm_cuda); }

}  // namespace vxl_fast
