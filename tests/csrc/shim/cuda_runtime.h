// Host shim: lets g++ compile the torch-free CUDA kernel headers (csrc/include/vxl_fast/*.cuh) and
// run their kernels on the CPU, for tests/csrc. It stands in for <cuda_runtime.h>, <cuda_fp16.h>
// and <cuda_bf16.h> (this folder comes first on the include path):
//   - __global__/__device__/__host__/__forceinline__ as host attributes; VXL_LAUNCH(kernel, grid,
//     block, smem, stream)(args...) runs the kernel once per (block, thread) with blockIdx,
//     threadIdx, blockDim, gridDim set, checking the geometry as a launch on a GPU would;
//   - the grid's blocks, each block's warps and each warp's lanes in order, or in a shuffled
//     order (vxl_host_set_order), which a kernel without block barriers must not notice;
//   - uint2/uint4 etc. as aligned structs; __half/__nv_bfloat16 as bit patterns with
//     round-to-nearest-even conversions (the algorithms of c10/util/Half.h and BFloat16.h);
//   - the _rn arithmetic intrinsics as single IEEE operations (build with -ffp-contract=off).
// Build with -D__CUDA_ARCH__=900 to compile the device branches (#if defined(__CUDA_ARCH__)).
//
//   - __shfl_xor_sync (float, full mask, whole warps of 32): each warp's lanes run as fibers
//     (ucontext); a lane that reaches a shuffle posts its value and yields, and once every lane
//     has posted they all resume and read their partner's. Lanes that leave a warp's shuffles
//     unbalanced (some finished, some waiting) fail the launch (cudaErrorLaunchFailure).
//
// NOTE: the warps of a block run one after another, so __syncthreads and __shared__ are left
// undefined: a kernel using them fails to compile here until the scheduler runs a block's warps
// together. Inline PTX, wgmma, TMA and cp.async have no host meaning, and nvcc's FMA contraction
// is not reproduced.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include <ucontext.h>

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
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719
};
using cudaStream_t = struct CUstream_st*;

inline cudaError_t vxl_host_last_error = cudaSuccess;

inline cudaError_t cudaGetLastError() {
  const cudaError_t err = vxl_host_last_error;
  vxl_host_last_error = cudaSuccess;
  return err;
}

inline const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    default:
      return "invalid argument";
  }
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
inline float __fsqrt_rn(float a) { return __builtin_sqrtf(a); }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __double2float_rn(double x) { return static_cast<float>(x); }

// ---- warps: lanes as fibers, for warp shuffles ----
namespace vxl_host {

inline constexpr unsigned kWarpSize = 32;
inline constexpr size_t kFiberStack = 256 * 1024;

// The warp being run: its lanes' fibers, and the values posted at the current shuffle (two
// slots, by the parity of each lane's shuffle count, so that a lane that resumed and reached its
// next shuffle never overwrites a value its partner has not read yet).
struct WarpRun {
  ucontext_t scheduler;
  ucontext_t fiber[kWarpSize];
  uint3 thread[kWarpSize];
  bool done[kWarpSize];
  unsigned shuffles[kWarpSize];
  float posted[2][kWarpSize];
  unsigned lanes = 0, lane = 0;
  bool failed = false;
  const std::function<void()>* body = nullptr;
};

inline WarpRun warp_run;

inline char* fiber_stacks() {
  static std::vector<char> stacks(kWarpSize * kFiberStack);
  return stacks.data();
}

inline void lane_main() {
  (*warp_run.body)();
  warp_run.done[warp_run.lane] = true;
}  // NOTE: returns to uc_link, the scheduler

// Runs the lanes (their threadIdx in w.thread) in `order` until all finish; false if their
// shuffles were unbalanced or misused.
inline bool run_warp(WarpRun& w, const std::vector<uint64_t>& order) {
  for (unsigned i = 0; i < w.lanes; ++i) {
    w.done[i] = false;
    w.shuffles[i] = 0;
    getcontext(&w.fiber[i]);
    w.fiber[i].uc_stack.ss_sp = fiber_stacks() + i * kFiberStack;
    w.fiber[i].uc_stack.ss_size = kFiberStack;
    w.fiber[i].uc_link = &w.scheduler;
    makecontext(&w.fiber[i], lane_main, 0);
  }
  w.failed = false;
  for (;;) {
    for (const uint64_t i : order) {
      if (!w.done[i]) {
        w.lane = static_cast<unsigned>(i);
        threadIdx = w.thread[i];
        swapcontext(&w.scheduler, &w.fiber[i]);
      }
    }
    unsigned finished = 0;
    for (unsigned i = 0; i < w.lanes; ++i) {
      finished += w.done[i] ? 1 : 0;
    }
    if (w.failed) {
      return false;
    }
    if (finished == w.lanes) {
      return true;
    }
    if (finished != 0) {
      return false;  // some lanes wait at a shuffle their finished partners never reach
    }
  }
}

}  // namespace vxl_host

inline float __shfl_xor_sync(unsigned mask, float value, int lane_mask, int width = 32) {
  vxl_host::WarpRun& w = vxl_host::warp_run;
  const unsigned me = w.lane;
  if (mask != 0xffffffffu || width != 32 || w.lanes != vxl_host::kWarpSize || lane_mask < 0 ||
      lane_mask >= 32) {
    w.failed = true;
    return value;
  }
  const unsigned slot = w.shuffles[me]++ % 2;
  w.posted[slot][me] = value;
  swapcontext(&w.fiber[me], &w.scheduler);
  return w.posted[slot][me ^ static_cast<unsigned>(lane_mask)];
}

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
    const std::function<void()> body = [&] { kernel(args...); };
    WarpRun& w = warp_run;
    w.body = &body;
    const uint64_t warps = (threads + kWarpSize - 1) / kWarpSize;
    for (const uint64_t b : launch_order(uint64_t{grid.x} * grid.y * grid.z, rng)) {
      blockIdx = uint3{static_cast<unsigned>(b % grid.x),
                       static_cast<unsigned>(b / grid.x % grid.y),
                       static_cast<unsigned>(b / grid.x / grid.y)};
      // NOTE: warps are the linear thread ids 32 k .. 32 k + 31, as on a GPU.
      for (const uint64_t warp : launch_order(warps, rng)) {
        const uint64_t first = warp * kWarpSize;
        w.lanes = static_cast<unsigned>(std::min<uint64_t>(kWarpSize, threads - first));
        for (unsigned i = 0; i < w.lanes; ++i) {
          const uint64_t t = first + i;
          w.thread[i] = uint3{static_cast<unsigned>(t % block.x),
                              static_cast<unsigned>(t / block.x % block.y),
                              static_cast<unsigned>(t / block.x / block.y)};
        }
        if (!run_warp(w, launch_order(w.lanes, rng))) {
          vxl_host_last_error = cudaErrorLaunchFailure;
          return;
        }
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
