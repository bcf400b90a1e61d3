// The SiLU-gated product of one element, as PyTorch's F.silu(gate) * up rounds it for a storage
// type T:
//     s   = T(g / (1 + exp(-g)))      g = float(gate), in fp32
//     out = T(float(s) * float(up))
// Shared by the CPU impl and the CUDA kernel (silu_and_mul.cuh).
#pragma once

#include <cmath>

#include "vxl_fast/host_device.h"

namespace vxl_fast {

// NOTE: on the device expf is CUDA's (as in PyTorch's CUDA silu) and the division is IEEE; on
// the host std::exp is libm's, while PyTorch's CPU silu uses its vectorised exp (the fp32 results
// then differ by an ulp or two; see ops.silu_and_mul).
VXL_HOST_DEVICE float silu(float g) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
#else
  return g / (1.0f + std::exp(-g));
#endif
}

VXL_HOST_DEVICE float gated_mul(float s, float up) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(s, up);
#else
  return s * up;
#endif
}

}  // namespace vxl_fast
