// CUDA impl of vxl_fast::interleave_vst (kernel: include/vxl_fast/interleave_vst.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/cuda_check.h"
#include "vxl_fast/interleave_vst.cuh"

namespace vxl_fast {
namespace {

at::Tensor interleave_vst_cuda(const at::Tensor& raw, const at::Tensor& vst, int64_t ratio,
                               int64_t carry) {
  check_interleave_vst(raw, vst, ratio, carry);
  const c10::cuda::CUDAGuard guard(raw.device());
  const int64_t n_raw = raw.size(0);
  const int64_t n_out = n_raw + num_vst(n_raw, ratio, carry);
  at::Tensor out = at::empty({n_out, raw.size(1)}, raw.options());
  if (out.numel() == 0) {
    return out;
  }
  const cudaError_t err = launch_interleave_vst(
      raw.const_data_ptr(), raw.stride(0) * raw.element_size(), vst.const_data_ptr(),
      out.mutable_data_ptr(), n_out, raw.size(1) * raw.element_size(), ratio, carry,
      c10::cuda::getCurrentCUDAStream());
  CHECK_CUDA_LAUNCH("interleave_vst", err);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("interleave_vst", &interleave_vst_cuda); }

}  // namespace vxl_fast
