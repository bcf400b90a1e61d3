// The CUDA impls' driver of the residual-add norms (add_layer_norm, fused_add_rms_norm): x and
// residual [..., d] as rows, the two outputs allocated, the kernel launched on the current stream.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <tuple>

#include "cuda/cuda_check.h"

namespace vxl_fast {

// (normed, h) [..., d]: `p` (the op's own fields — weight, bias, eps — set) gets the outputs,
// rows and strides, and launch(p, stream) runs the kernel (not for zero rows).
template <typename T, typename Params, typename Launch>
std::tuple<at::Tensor, at::Tensor> add_norm_launch(const at::Tensor& x, const at::Tensor& residual,
                                                   Params p, const char* op, const Launch& launch) {
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor residual_out = at::empty(x.sizes(), x.options());
  const int64_t d = x.size(-1);
  const at::Tensor x2 = x.reshape({-1, d});
  const at::Tensor r2 = residual.reshape({-1, d});
  if (x2.size(0) == 0) {
    return {out, residual_out};
  }
  p.out = static_cast<T*>(out.mutable_data_ptr());
  p.residual_out = static_cast<T*>(residual_out.mutable_data_ptr());
  p.x = static_cast<const T*>(x2.const_data_ptr());
  p.residual = static_cast<const T*>(r2.const_data_ptr());
  p.rows = x2.size(0);
  p.d = d;
  p.x_stride = x2.stride(0);
  p.residual_stride = r2.stride(0);
  const cudaError_t err = launch(p, c10::cuda::getCurrentCUDAStream());
  CHECK_CUDA_LAUNCH(op, err);
  return {out, residual_out};
}

}  // namespace vxl_fast
