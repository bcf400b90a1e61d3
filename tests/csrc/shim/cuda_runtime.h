// Host shim: lets g++ compile the torch-free CUDA kernel headers (csrc/include/vxl_fast/*.cuh) and
// run their kernels on the CPU, for tests/csrc. It stands in for <cuda_runtime.h>, <cuda_fp16.h>
// and <cuda_bf16.h> (this folder comes first on the include path):
//   - __global__/__device__/__host__/__forceinline__ as host attributes; VXL_LAUNCH(kernel, grid,
//     block, smem, stream)(args...) runs the kernel once per (block, thread) with blockIdx,
//     threadIdx, blockDim, gridDim set, checking the geometry as a launch on a GPU would;
//   - the grid's blocks and each block's threads in order, or in a shuffled order
//     (vxl_host_set_order), which a kernel without barriers must not notice;
//   - uint2/uint4 etc. as aligned structs; __half/__nv_bfloat16 as bit patterns with
//     round-to-nearest-even conversions (the algorithms of c10/util/Half.h and BFloat16.h);
//   - the _rn arithmetic intrinsics as single IEEE operations (build with -ffp-contract=off).
// Build with -D__CUDA_ARCH__=900 to compile the device branches (#if defined(__CUDA_ARCH__)).
//
// NOTE: the threads of a block run one after another to completion, so __syncthreads, __shared__
// and warp shuffles are left undefined: a kernel using them fails to compile here until a
// cooperative scheduler (one ucontext per thread, switching at each barrier) is added. Inline
// PTX, wgmma, TMA and cp.async have no host meaning, and nvcc's FMA contraction is not
// reproduced.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#ifndef __CUDACC__
#define __CUDACC__ 1
#endif

// ---- launch geometry ----
struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline uint3 blockIdx, threadIdx;
inline dim3 blockDim, gridDim;

// ---- runtime API ----
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
using cudaStream_t = struct CUstream_st*;

inline cudaError_t vxl_host_last_error = cudaSuccess;

inline cudaError_t cudaGetLastError() {
  const cudaError_t err = vxl_host_last_error;
  vxl_host_last_error = cudaSuccess;
  return err;
}

inline const char* cudaGetErrorString(cudaError_t err) {
  return err == cudaSuccess ? "no error" : "invalid configuration argument";
}

// ---- vector types ----
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};

// ---- 16-bit floats: storage plus round-to-nearest-even conversions ----
struct __half {
  uint16_t x;
};
struct __nv_bfloat16 {
  uint16_t x;
};

namespace vxl_host {

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace vxl_host

inline float __half2float(__half h) {
  const uint32_t w = static_cast<uint32_t>(h.x) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = vxl_host::from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = vxl_host::from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
  return vxl_host::from_bits(sign | (two_w < (1u << 27) ? vxl_host::to_bits(denormalized)
                                                        : vxl_host::to_bits(normalized)));
}

inline __half __float2half_rn(float f) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (__builtin_fabsf(f) * scale_to_inf) * scale_to_zero;
  const uint32_t w = vxl_host::to_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) {
    bias = 0x71000000u;
  }
  base = vxl_host::from_bits((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = vxl_host::to_bits(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  return __half{static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign))};
}

inline float __bfloat162float(__nv_bfloat16 b) {
  return vxl_host::from_bits(static_cast<uint32_t>(b.x) << 16);
}

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  if (f != f) {
    return __nv_bfloat16{0x7FC0};
  }
  const uint32_t u = vxl_host::to_bits(f);
  return __nv_bfloat16{static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16)};
}

// ---- correctly rounded arithmetic intrinsics (each a single IEEE operation) ----
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __double2float_rn(double x) { return static_cast<float>(x); }

// ---- launches ----
namespace vxl_host {

// 0: blocks and threads in index order; otherwise the seed of a shuffled order.
inline uint64_t order_seed = 0;

// The indices 0 .. n - 1 in the launch order.
inline std::vector<uint64_t> launch_order(uint64_t n, std::mt19937_64& rng) {
  std::vector<uint64_t> order(n);
  std::iota(order.begin(), order.end(), uint64_t{0});
  if (order_seed != 0) {
    std::shuffle(order.begin(), order.end(), rng);
  }
  return order;
}

template <typename... Params>
struct Launch {
  void (*kernel)(Params...);
  dim3 grid, block;
  size_t smem;

  template <typename... Args>
  void operator()(Args&&... args) const {
    const uint64_t threads = uint64_t{block.x} * block.y * block.z;
    // NOTE: the limits of every GPU since sm_30; 48 KiB is the static shared memory limit.
    if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535u ||
        grid.z > 65535u || threads < 1 || threads > 1024 || block.z > 64 || smem > 48 * 1024) {
      vxl_host_last_error = cudaErrorInvalidConfiguration;
      return;
    }
    std::mt19937_64 rng(order_seed);
    gridDim = grid;
    blockDim = block;
    for (const uint64_t b : launch_order(uint64_t{grid.x} * grid.y * grid.z, rng)) {
      blockIdx = uint3{static_cast<unsigned>(b % grid.x),
                       static_cast<unsigned>(b / grid.x % grid.y),
                       static_cast<unsigned>(b / grid.x / grid.y)};
      for (const uint64_t t : launch_order(threads, rng)) {
        threadIdx = uint3{static_cast<unsigned>(t % block.x),
                          static_cast<unsigned>(t / block.x % block.y),
                          static_cast<unsigned>(t / block.x / block.y)};
        kernel(args...);
      }
    }
  }
};

template <typename... Params>
Launch<Params...> launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                         cudaStream_t) {
  return Launch<Params...>{kernel, grid, block, smem};
}

}  // namespace vxl_host

#define VXL_LAUNCH(kernel, grid, block, smem, stream) \
  ::vxl_host::launch((kernel), (grid), (block), (smem), (stream))
