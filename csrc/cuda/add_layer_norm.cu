// CUDA impl of vxl_fast::add_layer_norm (kernel: include/vxl_fast/layer_norm.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "dispatch.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/layer_norm.cuh"

namespace vxl_fast {
namespace {

std::tuple<at::Tensor, at::Tensor> add_layer_norm_cuda(const at::Tensor& x, const at::Tensor& residual,
                                                       const at::Tensor& weight, const at::Tensor& bias,
                                                       double eps) {
  check_add_layer_norm(x, residual, weight, bias, eps);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor residual_out = at::empty(x.sizes(), x.options());
  const int64_t d = x.size(-1);
  const at::Tensor x2 = x.reshape({-1, d});
  const at::Tensor r2 = residual.reshape({-1, d});
  if (x2.size(0) == 0) {
    return {out, residual_out};
  }
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "add_layer_norm", [&] {
    using T = typename CudaType<scalar_t>::type;
    AddLayerNormParams<T> p;
    p.out = static_cast<T*>(out.mutable_data_ptr());
    p.residual_out = static_cast<T*>(residual_out.mutable_data_ptr());
    p.x = static_cast<const T*>(x2.const_data_ptr());
    p.residual = static_cast<const T*>(r2.const_data_ptr());
    p.weight = static_cast<const T*>(weight.const_data_ptr());
    p.bias = static_cast<const T*>(bias.const_data_ptr());
    p.rows = x2.size(0);
    p.d = d;
    p.x_stride = x2.stride(0);
    p.residual_stride = r2.stride(0);
    p.eps = static_cast<float>(eps);
    const cudaError_t err = launch_add_layer_norm<T>(p, c10::cuda::getCurrentCUDAStream());
    CHECK_CUDA_LAUNCH("add_layer_norm", err);
  });
  return {out, residual_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("add_layer_norm", &add_layer_norm_cuda); }

}  // namespace vxl_fast
