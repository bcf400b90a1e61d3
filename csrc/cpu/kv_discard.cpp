// CPU impl of vxl_fast::kv_discard: one task per (head, VST), fp32 RoPE, one cast per element.
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

#include "checks.h"
#include "dispatch.h"
#include "vxl_fast/rope.h"

namespace vxl_fast {
namespace {

template <typename T>
void move_vsts(const at::Tensor& cache_k, const at::Tensor& cache_v, const at::Tensor& scratch_k,
               const at::Tensor& scratch_v, const at::Tensor& vst_index, const at::Tensor& cos,
               const at::Tensor& sin, int64_t dst) {
  const int64_t heads = cache_k.size(0);
  const int64_t nb = vst_index.size(0);
  const int64_t half = cache_k.size(2) / 2;
  const auto index = vst_index.accessor<int64_t, 1>();
  T* ck = cache_k.mutable_data_ptr<T>();
  T* cv = cache_v.mutable_data_ptr<T>();
  const T* sk = scratch_k.const_data_ptr<T>();
  const T* sv = scratch_v.const_data_ptr<T>();
  const float* cos_data = cos.const_data_ptr<float>();
  const float* sin_data = sin.const_data_ptr<float>();
  at::parallel_for(0, heads * nb, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / nb;
      const int64_t i = task % nb;
      const int64_t row = index[i];
      const int64_t pos = dst + i;
      const T* xk = sk + h * scratch_k.stride(0) + row * scratch_k.stride(1);
      const T* xv = sv + h * scratch_v.stride(0) + row * scratch_v.stride(1);
      T* yk = ck + h * cache_k.stride(0) + pos * cache_k.stride(1);
      T* yv = cv + h * cache_v.stride(0) + pos * cache_v.stride(1);
      const float* cos_p = cos_data + pos * cos.stride(0);
      const float* sin_p = sin_data + pos * sin.stride(0);
      for (int64_t c = 0; c < half; ++c) {
        const float lo = static_cast<float>(xk[c]);
        const float hi = static_cast<float>(xk[c + half]);
        yk[c] = static_cast<T>(rope_lo(lo, hi, cos_p[c], sin_p[c]));
        yk[c + half] = static_cast<T>(rope_hi(lo, hi, cos_p[c + half], sin_p[c + half]));
      }
      std::memcpy(yv, xv, 2 * half * sizeof(T));
    }
  });
}

void kv_discard_cpu(at::Tensor& cache_k, at::Tensor& cache_v, at::Tensor& scratch_k,
                    at::Tensor& scratch_v, const at::Tensor& vst_index, const at::Tensor& cos,
                    const at::Tensor& sin, int64_t dst) {
  check_kv_discard(cache_k, cache_v, scratch_k, scratch_v, vst_index, cos, sin, dst);
  check_kv_discard_index(vst_index, scratch_k.size(1));
  VXL_DISPATCH_FLOAT_TYPES(cache_k.scalar_type(), "kv_discard", [&] {
    move_vsts<scalar_t>(cache_k, cache_v, scratch_k, scratch_v, vst_index, cos, sin, dst);
  });
  scratch_k.zero_();
  scratch_v.zero_();
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("kv_discard", &kv_discard_cpu); }

}  // namespace vxl_fast
