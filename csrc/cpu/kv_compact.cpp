// CPU impl of vxl_fast::kv_compact: one task per (head, VST), fp32 RoPE, one cast per element.
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
void write_vsts(const at::Tensor& cache_k, const at::Tensor& cache_v, const at::Tensor& vst_k,
                const at::Tensor& vst_v, const at::Tensor& cos, const at::Tensor& sin,
                int64_t dst) {
  const int64_t heads = cache_k.size(0);
  const int64_t nb = vst_k.size(1);
  const int64_t half = cache_k.size(2) / 2;
  T* ck = cache_k.mutable_data_ptr<T>();
  T* cv = cache_v.mutable_data_ptr<T>();
  const T* sk = vst_k.const_data_ptr<T>();
  const T* sv = vst_v.const_data_ptr<T>();
  const float* cos_data = cos.const_data_ptr<float>();
  const float* sin_data = sin.const_data_ptr<float>();
  at::parallel_for(0, heads * nb, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / nb;
      const int64_t i = task % nb;
      const int64_t pos = dst + i;
      const T* xk = sk + h * vst_k.stride(0) + i * vst_k.stride(1);
      const T* xv = sv + h * vst_v.stride(0) + i * vst_v.stride(1);
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

void kv_compact_cpu(at::Tensor& cache_k, at::Tensor& cache_v, const at::Tensor& vst_k,
                    const at::Tensor& vst_v, const at::Tensor& cos, const at::Tensor& sin,
                    int64_t dst) {
  check_kv_compact(cache_k, cache_v, vst_k, vst_v, cos, sin, dst);
  VXL_DISPATCH_FLOAT_TYPES(cache_k.scalar_type(), "kv_compact", [&] {
    write_vsts<scalar_t>(cache_k, cache_v, vst_k, vst_v, cos, sin, dst);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("kv_compact", &kv_compact_cpu); }

}  // namespace vxl_fast
