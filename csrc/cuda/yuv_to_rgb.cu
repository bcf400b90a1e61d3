// CUDA impl of vxl_fast::yuv420_to_rgb (kernel: include/vxl_fast/yuv_to_rgb.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/cuda_check.h"
#include "vxl_fast/yuv_to_rgb.cuh"

namespace vxl_fast {
namespace {

YuvPlane plane_of(const at::Tensor& t) {
  return YuvPlane{t.const_data_ptr<uint8_t>(), t.stride(0), t.stride(1), t.stride(2)};
}

at::Tensor yuv420_to_rgb_cuda(const at::Tensor& y, const at::Tensor& u, const at::Tensor& v,
                              int64_t matrix, bool full_range) {
  check_yuv420_to_rgb(y, u, v, matrix);
  const c10::cuda::CUDAGuard guard(y.device());
  at::Tensor out = at::empty({y.size(0), y.size(1), y.size(2), 3}, y.options());
  const YuvToRgbParams p{plane_of(y), plane_of(u), plane_of(v), out.mutable_data_ptr<uint8_t>(),
                         y.size(1), y.size(2), yuv_to_rgb_coeffs(matrix, full_range)};
  const cudaError_t err = launch_yuv420_to_rgb(p, y.size(0), c10::cuda::getCurrentCUDAStream());
  CHECK_CUDA_LAUNCH("yuv420_to_rgb", err);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("yuv420_to_rgb", &yuv420_to_rgb_cuda); }

}  // namespace vxl_fast
