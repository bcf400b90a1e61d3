// CUDA impl of vxl_fast::silu_and_mul (kernel: include/vxl_fast/silu_and_mul.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <vector>

#include "checks.h"
#include "dispatch.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/silu_and_mul.cuh"

namespace vxl_fast {
namespace {

at::Tensor silu_and_mul_cuda(const at::Tensor& x) {
  check_silu_and_mul(x);
  const c10::cuda::CUDAGuard guard(x.device());
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() /= 2;
  at::Tensor out = at::empty(shape, x.options());
  if (out.numel() == 0) {
    return out;
  }
  const at::Tensor x2 = x.reshape({-1, x.size(-1)});
  VXL_DISPATCH_FLOAT_TYPES(x.scalar_type(), "silu_and_mul", [&] {
    using T = typename CudaType<scalar_t>::type;
    SiluAndMulParams<T> p;
    p.out = static_cast<T*>(out.mutable_data_ptr());
    p.x = static_cast<const T*>(x2.const_data_ptr());
    p.rows = x2.size(0);
    p.width = x2.size(1) / 2;
    p.x_stride = x2.stride(0);
    const cudaError_t err = launch_silu_and_mul<T>(p, c10::cuda::getCurrentCUDAStream());
    CHECK_CUDA_LAUNCH("silu_and_mul", err);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("silu_and_mul", &silu_and_mul_cuda); }

}  // namespace vxl_fast
