// Rotary position embedding of one element pair, in fp32.
//
// For a row x of width d = 2 half and full-width tables cos[p], sin[p] (each [d]):
//     out = x * cos[p] + rotate_half(x) * sin[p],  rotate_half(x) = cat(-x[half:], x[:half]),
// so for c < half, with lo = x[c] and hi = x[c + half]:
//     out[c]        = lo * cos[p, c]        - hi * sin[p, c]
//     out[c + half] = hi * cos[p, c + half] + lo * sin[p, c + half]
#pragma once

#include "vxl_fast/host_device.h"

namespace vxl_fast {

// NOTE: on the device, the _rn intrinsics stop nvcc from contracting a*b - c*d into an FMA,
// so the kernel rounds exactly like the PyTorch reference (a multiply, a multiply, an add).
VXL_HOST_DEVICE float rope_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

VXL_HOST_DEVICE float rope_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// out[c] for c < half.
VXL_HOST_DEVICE float rope_lo(float lo, float hi, float cos_c, float sin_c) {
  return rope_add(rope_mul(lo, cos_c), rope_mul(-hi, sin_c));
}

// out[c + half] for c < half.
VXL_HOST_DEVICE float rope_hi(float lo, float hi, float cos_c, float sin_c) {
  return rope_add(rope_mul(hi, cos_c), rope_mul(lo, sin_c));
}

}  // namespace vxl_fast
