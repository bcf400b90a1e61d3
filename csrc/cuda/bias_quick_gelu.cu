// CUDA impl of vxl_fast::bias_quick_gelu (kernel: include/vxl_fast/quick_gelu.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "dispatch.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/quick_gelu.cuh"

namespace vxl_fast {
namespace {

at::Tensor bias_quick_gelu_cuda(const at::Tensor& x, const at::Tensor& bias) {
  check_bias_quick_gelu(x, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty(x.sizes(), x.options());
  if (out.numel() == 0) {
    return out;
  }
  const at::Tensor x2 = x.reshape({-1, x.size(-1)});
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "bias_quick_gelu", [&] {
    using T = typename CudaType<scalar_t>::type;
    BiasQuickGeluParams<T> p;
    p.out = static_cast<T*>(out.mutable_data_ptr());
    p.x = static_cast<const T*>(x2.const_data_ptr());
    p.bias = static_cast<const T*>(bias.const_data_ptr());
    p.rows = x2.size(0);
    p.width = x2.size(1);
    p.x_stride = x2.stride(0);
    const cudaError_t err = launch_bias_quick_gelu<T>(p, c10::cuda::getCurrentCUDAStream());
    CHECK_CUDA_LAUNCH("bias_quick_gelu", err);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("bias_quick_gelu", &bias_quick_gelu_cuda); }

}  // namespace vxl_fast
