// CUDA impl of vxl_fast::clip_embed_layer_norm (kernel: include/vxl_fast/layer_norm.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "dispatch.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/layer_norm.cuh"

namespace vxl_fast {
namespace {

at::Tensor clip_embed_layer_norm_cuda(const at::Tensor& patches, const at::Tensor& cls,
                                      const at::Tensor& pos, const at::Tensor& weight,
                                      const at::Tensor& bias, double eps) {
  check_clip_embed_layer_norm(patches, cls, pos, weight, bias, eps);
  const c10::cuda::CUDAGuard guard(patches.device());
  at::Tensor out = at::empty({patches.size(0), patches.size(1) + 1, patches.size(2)},
                             patches.options());
  if (out.numel() == 0) {
    return out;
  }
  VXL_DISPATCH_FLOAT_TYPES(patches.scalar_type(), "clip_embed_layer_norm", [&] {
    using T = typename CudaType<scalar_t>::type;
    ClipEmbedLayerNormParams<T> p;
    p.out = static_cast<T*>(out.mutable_data_ptr());
    p.patches = static_cast<const T*>(patches.const_data_ptr());
    p.cls = static_cast<const T*>(cls.const_data_ptr());
    p.pos = static_cast<const T*>(pos.const_data_ptr());
    p.weight = static_cast<const T*>(weight.const_data_ptr());
    p.bias = static_cast<const T*>(bias.const_data_ptr());
    p.frames = patches.size(0);
    p.n_patches = patches.size(1);
    p.d = patches.size(2);
    p.frame_stride = patches.stride(0);
    p.patch_stride = patches.stride(1);
    p.pos_stride = pos.stride(0);
    p.eps = static_cast<float>(eps);
    const cudaError_t err = launch_clip_embed_layer_norm<T>(p, c10::cuda::getCurrentCUDAStream());
    CHECK_CUDA_LAUNCH("clip_embed_layer_norm", err);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) {
  m.impl("clip_embed_layer_norm", &clip_embed_layer_norm_cuda);
}

}  // namespace vxl_fast
