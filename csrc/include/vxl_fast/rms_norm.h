// Residual add + RMSNorm of one row of width D, as the Qwen2 decoder computes it in PyTorch
// (h = residual + x; Qwen2RMSNorm(h)), for a storage type T:
//     h[i] = T(float(residual[i]) + float(x[i]))          the residual add, rounded to T
//     s    = sum_i fl32(float(h[i]) * float(h[i]))        in the order below
//     r    = fl32(1 / fl32(sqrt(fl32(fl32(s / D) + float(eps)))))
//     normed[i] = T(float(weight[i]) * float(T(float(h[i]) * r)))
// every step a separately rounded fp32 operation. The order of the sum is shared by the CUDA kernel
// and the CPU impl, so the two agree bit for bit: element i belongs to lane (i / kNormChunk) % 32, each
// lane adds its elements in increasing i, and the 32 partial sums are combined by the butterfly
// p[l] <- p[l] + p[l ^ o], o = 16, 8, 4, 2, 1 (a warp's __shfl_xor_sync).
// NOTE: PyTorch sums in another order and its CPU/CUDA rsqrt is an approximation, so `normed`
// differs from the PyTorch composition by a few fp32 ulp (h is bit-identical); see
// ops.fused_add_rms_norm for the bound.
#pragma once

#include <cmath>
#include <cstdint>

#include "vxl_fast/host_device.h"

namespace vxl_fast {

inline constexpr int kNormLanes = 32;
inline constexpr int kNormChunk = 8;  // consecutive elements per lane turn

// NOTE: on the device, the _rn intrinsics keep every step a separate IEEE operation (no FMA
// contraction of the sum of squares, no approximate division or square root).
VXL_HOST_DEVICE float norm_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

VXL_HOST_DEVICE float norm_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// The lane of element i in the sum's order.
VXL_HOST_DEVICE int norm_lane(int64_t i) {
  return static_cast<int>((i / kNormChunk) % kNormLanes);
}

// r = 1 / sqrt(s / d + eps), each step rounded.
VXL_HOST_DEVICE float inv_rms(float sum_squares, int64_t d, float eps) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(sum_squares, static_cast<float>(d)), eps)));
#else
  return 1.0f / std::sqrt(sum_squares / static_cast<float>(d) + eps);
#endif
}

// The butterfly over the 32 lanes' partial sums (host side; a warp does it with shuffles).
inline float butterfly_sum(const float (&partial)[kNormLanes]) {
  float p[kNormLanes], q[kNormLanes];
  for (int l = 0; l < kNormLanes; ++l) {
    p[l] = partial[l];
  }
  for (int o = kNormLanes / 2; o > 0; o /= 2) {
    for (int l = 0; l < kNormLanes; ++l) {
      q[l] = norm_add(p[l], p[l ^ o]);
    }
    for (int l = 0; l < kNormLanes; ++l) {
      p[l] = q[l];
    }
  }
  return p[0];
}

// One row on the host (the CPU impl; rms_norm.cuh has the CUDA kernel's): h[i] = T(residual[i] +
// x[i]), then y[i] = normed[i].
template <typename T>
void add_rms_norm_row(const T* x, const T* residual, const T* weight, int64_t d, float eps, T* h,
                      T* y) {
  float partial[kNormLanes] = {};
  for (int64_t i = 0; i < d; ++i) {
    h[i] = static_cast<T>(norm_add(static_cast<float>(residual[i]), static_cast<float>(x[i])));
    const float hf = static_cast<float>(h[i]);
    float& p = partial[norm_lane(i)];
    p = norm_add(p, norm_mul(hf, hf));
  }
  const float r = inv_rms(butterfly_sum(partial), d, eps);
  for (int64_t i = 0; i < d; ++i) {
    const float normed = static_cast<float>(static_cast<T>(norm_mul(static_cast<float>(h[i]), r)));
    y[i] = static_cast<T>(norm_mul(static_cast<float>(weight[i]), normed));
  }
}

}  // namespace vxl_fast
