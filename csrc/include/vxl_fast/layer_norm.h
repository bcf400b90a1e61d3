// Residual add + LayerNorm of one row of width D, as the CLIP encoder computes it (h = residual + x;
// nn.LayerNorm(h) with fp32 statistics), for a storage type T, every step a separately rounded fp32
// operation:
//     h[i]   = T(float(residual[i]) + float(x[i]))        the residual add, rounded to T
//     mean   = fl32(s1 / D),        s1 = sum_i float(h[i])
//     d[i]   = fl32(float(h[i]) - mean)
//     rstd   = fl32(1 / fl32(sqrt(fl32(fl32(s2 / D) + float(eps))))),   s2 = sum_i fl32(d[i] * d[i])
//     normed[i] = T(fl32(fl32(fl32(d[i] * rstd) * float(weight[i])) + float(bias[i])))
// The two sums run in the order of rms_norm.h (element i in lane (i / kNormChunk) % 32, each lane in
// increasing i, then the butterfly over the 32 lanes), shared by the CUDA kernel and the CPU impl,
// so the two agree bit for bit; rstd is rms_norm.h's inv_rms of s2. The variance is the two-pass one (the mean first, then the squares
// of the deviations), so it does not cancel for rows with a large mean.
// NOTE: PyTorch's LayerNorm uses Welford's update in another order and an approximate rsqrt, so
// `normed` differs from it by a few fp32 ulp (h is bit-identical); see ops.add_layer_norm.
// add_layer_norm_row is the CPU impls' row (add_layer_norm, clip_embed_layer_norm);
// layer_norm.cuh has the CUDA kernels' one.
#pragma once

#include <cstdint>

#include "vxl_fast/host_device.h"
#include "vxl_fast/rms_norm.h"

namespace vxl_fast {

VXL_HOST_DEVICE float norm_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// The row mean s / d, rounded.
VXL_HOST_DEVICE float row_mean(float sum, int64_t d) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(sum, static_cast<float>(d));
#else
  return sum / static_cast<float>(d);
#endif
}

// The affine step of one element: fl32(fl32(fl32(dev * rstd) * w) + b).
VXL_HOST_DEVICE float layer_norm_affine(float dev, float rstd, float w, float b) {
  return norm_add(norm_mul(norm_mul(dev, rstd), w), b);
}

// One row on the host: h[i] = T(residual[i] + x[i]), then y[i] = normed[i]. y may be h (each h[i] is
// read before y[i] is written).
template <typename T>
void add_layer_norm_row(const T* x, const T* residual, const T* weight, const T* bias, int64_t d,
                        float eps, T* h, T* y) {
  float sums[kNormLanes] = {};
  for (int64_t i = 0; i < d; ++i) {
    h[i] = static_cast<T>(norm_add(static_cast<float>(residual[i]), static_cast<float>(x[i])));
    float& s = sums[norm_lane(i)];
    s = norm_add(s, static_cast<float>(h[i]));
  }
  const float mean = row_mean(butterfly_sum(sums), d);
  float squares[kNormLanes] = {};
  for (int64_t i = 0; i < d; ++i) {
    const float dev = norm_sub(static_cast<float>(h[i]), mean);
    float& s = squares[norm_lane(i)];
    s = norm_add(s, norm_mul(dev, dev));
  }
  const float rstd = inv_rms(butterfly_sum(squares), d, eps);
  for (int64_t i = 0; i < d; ++i) {
    const float dev = norm_sub(static_cast<float>(h[i]), mean);
    y[i] = static_cast<T>(layer_norm_affine(dev, rstd, static_cast<float>(weight[i]),
                                            static_cast<float>(bias[i])));
  }
}

}  // namespace vxl_fast
