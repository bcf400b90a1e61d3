// CUDA impl of vxl_fast::rope_kv_write (kernel: include/vxl_fast/rope_kv_write.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "dispatch.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/rope_kv_write.cuh"

namespace vxl_fast {
namespace {

at::Tensor rope_kv_write_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& cos, const at::Tensor& sin, at::Tensor& cache_k,
                              at::Tensor& cache_v, int64_t start) {
  check_rope_kv_write(q, k, v, cos, sin, cache_k, cache_v, start);
  CHECK_VALUE(q.size(1) + k.size(1) <= 65535,
              "rope_kv_write: the CUDA kernel supports at most 65535 query and KV heads, got ",
              q.size(1) + k.size(1), ".");
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor q_out = at::empty({q.size(1), q.size(0), q.size(2)}, q.options());
  if (q.size(0) == 0 || q.size(1) + k.size(1) == 0) {
    return q_out;
  }
  VXL_DISPATCH_FLOAT_TYPES(q.scalar_type(), "rope_kv_write", [&] {
    using T = typename CudaType<scalar_t>::type;
    RopeKvWriteParams<T> p;
    p.q_out = static_cast<T*>(q_out.mutable_data_ptr());
    p.cache_k = static_cast<T*>(cache_k.mutable_data_ptr());
    p.cache_v = static_cast<T*>(cache_v.mutable_data_ptr());
    p.q = static_cast<const T*>(q.const_data_ptr());
    p.k = static_cast<const T*>(k.const_data_ptr());
    p.v = static_cast<const T*>(v.const_data_ptr());
    p.cos = cos.const_data_ptr<float>();
    p.sin = sin.const_data_ptr<float>();
    p.q_stride_row = q.stride(0);
    p.q_stride_h = q.stride(1);
    p.k_stride_row = k.stride(0);
    p.k_stride_h = k.stride(1);
    p.v_stride_row = v.stride(0);
    p.v_stride_h = v.stride(1);
    p.cache_k_stride_h = cache_k.stride(0);
    p.cache_k_stride_row = cache_k.stride(1);
    p.cache_v_stride_h = cache_v.stride(0);
    p.cache_v_stride_row = cache_v.stride(1);
    p.cos_stride_row = cos.stride(0);
    p.sin_stride_row = sin.stride(0);
    p.n = q.size(0);
    p.heads = q.size(1);
    p.kv_heads = k.size(1);
    p.half = q.size(2) / 2;
    p.start = start;
    const cudaError_t err = launch_rope_kv_write<T>(p, c10::cuda::getCurrentCUDAStream());
    CHECK_CUDA_LAUNCH("rope_kv_write", err);
  });
  return q_out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) { m.impl("rope_kv_write", &rope_kv_write_cuda); }

}  // namespace vxl_fast
