// CPU impl of vxl_fast::rope_kv_write: one task per (row, head), fp32 RoPE (rope.h), one cast per
// element.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

#include "checks.h"
#include "dispatch.h"
#include "vxl_fast/rope.h"

namespace vxl_fast {
namespace {

template <typename T>
void rotate(const T* x, T* y, const float* cos_p, const float* sin_p, int64_t half) {
  for (int64_t c = 0; c < half; ++c) {
    const float lo = static_cast<float>(x[c]);
    const float hi = static_cast<float>(x[c + half]);
    y[c] = static_cast<T>(rope_lo(lo, hi, cos_p[c], sin_p[c]));
    y[c + half] = static_cast<T>(rope_hi(lo, hi, cos_p[c + half], sin_p[c + half]));
  }
}

template <typename T>
void rope_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos,
               const at::Tensor& sin, const at::Tensor& cache_k, const at::Tensor& cache_v,
               int64_t start, const at::Tensor& q_out) {
  const int64_t n = q.size(0), heads = q.size(1), kv_heads = k.size(1), half = q.size(2) / 2;
  const T* qs = q.const_data_ptr<T>();
  const T* ks = k.const_data_ptr<T>();
  const T* vs = v.const_data_ptr<T>();
  T* qo = q_out.mutable_data_ptr<T>();
  T* ck = cache_k.mutable_data_ptr<T>();
  T* cv = cache_v.mutable_data_ptr<T>();
  const float* cos_data = cos.const_data_ptr<float>();
  const float* sin_data = sin.const_data_ptr<float>();
  const int64_t all_heads = heads + kv_heads;
  at::parallel_for(0, n * all_heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / all_heads;
      const int64_t h = task % all_heads;
      const int64_t pos = start + i;
      const float* cos_p = cos_data + pos * cos.stride(0);
      const float* sin_p = sin_data + pos * sin.stride(0);
      if (h < heads) {
        rotate(qs + i * q.stride(0) + h * q.stride(1), qo + (h * n + i) * 2 * half, cos_p, sin_p,
               half);
        continue;
      }
      const int64_t g = h - heads;
      rotate(ks + i * k.stride(0) + g * k.stride(1),
             ck + g * cache_k.stride(0) + pos * cache_k.stride(1), cos_p, sin_p, half);
      std::memcpy(cv + g * cache_v.stride(0) + pos * cache_v.stride(1),
                  vs + i * v.stride(0) + g * v.stride(1), 2 * half * sizeof(T));
    }
  });
}

at::Tensor rope_kv_write_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& cos, const at::Tensor& sin, at::Tensor& cache_k,
                             at::Tensor& cache_v, int64_t start) {
  check_rope_kv_write(q, k, v, cos, sin, cache_k, cache_v, start);
  at::Tensor q_out = at::empty({q.size(1), q.size(0), q.size(2)}, q.options());
  VXL_DISPATCH_FLOAT_TYPES(q.scalar_type(), "rope_kv_write", [&] {
    rope_rows<scalar_t>(q, k, v, cos, sin, cache_k, cache_v, start, q_out);
  });
  return q_out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("rope_kv_write", &rope_kv_write_cpu); }

}  // namespace vxl_fast
