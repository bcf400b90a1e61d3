// CUDA impl of vxl_fast::kv_compact (kernel: include/vxl_fast/kv_compact.cuh).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "dispatch.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/kv_compact.cuh"

namespace vxl_fast {
namespace {

template <typename T>
KvCompactParams<T> make_params(const at::Tensor& cache_k, const at::Tensor& cache_v,
                               const at::Tensor& vst_k, const at::Tensor& vst_v,
                               const at::Tensor& cos, const at::Tensor& sin, int64_t dst) {
  KvCompactParams<T> p;
  p.cache_k = static_cast<T*>(cache_k.mutable_data_ptr());
  p.cache_v = static_cast<T*>(cache_v.mutable_data_ptr());
  p.vst_k = static_cast<const T*>(vst_k.const_data_ptr());
  p.vst_v = static_cast<const T*>(vst_v.const_data_ptr());
  p.cos = cos.const_data_ptr<float>();
  p.sin = sin.const_data_ptr<float>();
  p.cache_k_stride_h = cache_k.stride(0);
  p.cache_k_stride_row = cache_k.stride(1);
  p.cache_v_stride_h = cache_v.stride(0);
  p.cache_v_stride_row = cache_v.stride(1);
  p.vst_k_stride_h = vst_k.stride(0);
  p.vst_k_stride_row = vst_k.stride(1);
  p.vst_v_stride_h = vst_v.stride(0);
  p.vst_v_stride_row = vst_v.stride(1);
  p.cos_stride_row = cos.stride(0);
  p.sin_stride_row = sin.stride(0);
  p.heads = cache_k.size(0);
  p.nb = vst_k.size(1);
  p.half = cache_k.size(2) / 2;
  p.dst = dst;
  return p;
}

void kv_compact_cuda(at::Tensor& cache_k, at::Tensor& cache_v, const at::Tensor& vst_k,
                     const at::Tensor& vst_v, const at::Tensor& cos, const at::Tensor& sin,
                     int64_t dst) {
  check_kv_compact(cache_k, cache_v, vst_k, vst_v, cos, sin, dst);
  CHECK_VALUE(cache_k.size(0) <= 65535,
              "kv_compact: the CUDA kernel supports at most 65535 KV heads, got ", cache_k.size(0),
              ".");
  const c10::cuda::CUDAGuard guard(cache_k.device());
  if (vst_k.size(1) > 0 && cache_k.size(0) > 0) {
    VXL_DISPATCH_FLOAT_TYPES(cache_k.scalar_type(), "kv_compact", [&] {
      using T = typename CudaType<scalar_t>::type;
      const cudaError_t err =
          launch_kv_compact<T>(make_params<T>(cache_k, cache_v, vst_k, vst_v, cos, sin, dst),
                               c10::cuda::getCurrentCUDAStream());
      CHECK_CUDA_LAUNCH("kv_compact", err);
    });
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("kv_compact", &kv_compact_cuda); }

}  // namespace vxl_fast
