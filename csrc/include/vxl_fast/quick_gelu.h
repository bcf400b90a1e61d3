// The bias add + quick GELU of one element, as PyTorch rounds CLIP's `h = fc1(x);
// h * torch.sigmoid(1.702 * h)` for a storage type T when fc1's product x comes without its bias:
//     h = T(float(x) + float(bias))
//     t = T(1.702f * float(h))
//     s = T(1 / (1 + exp(-float(t))))          torch.sigmoid in fp32
//     y = T(float(h) * float(s))
// every step a separately rounded fp32 operation (the casts to T are no-ops for fp32). Shared by the
// CPU impl and the CUDA kernel (quick_gelu.cuh).
#pragma once

#include <cmath>

#include "vxl_fast/host_device.h"

namespace vxl_fast {

// NOTE: the Python scalar 1.702 as PyTorch's fp32 opmath sees it.
inline constexpr float kQuickGeluScale = 1.702f;

VXL_HOST_DEVICE float bias_add(float x, float bias) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(x, bias);
#else
  return x + bias;
#endif
}

VXL_HOST_DEVICE float quick_gelu_arg(float h) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(kQuickGeluScale, h);
#else
  return kQuickGeluScale * h;
#endif
}

// NOTE: on the device expf is CUDA's and the division IEEE, as in PyTorch's CUDA sigmoid; on the
// host std::exp is libm's, while PyTorch's CPU sigmoid uses its vectorised exp (the fp32 results
// then differ by an ulp or two; see ops.bias_quick_gelu).
VXL_HOST_DEVICE float sigmoid(float t) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-t)));
#else
  return 1.0f / (1.0f + std::exp(-t));
#endif
}

VXL_HOST_DEVICE float gate_product(float h, float s) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(h, s);
#else
  return h * s;
#endif
}

}  // namespace vxl_fast
