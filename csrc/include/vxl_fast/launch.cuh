// Launch geometry shared by the kernels (one thread block per row, threads strided over the row)
// and VXL_LAUNCH, the one way a kernel is launched.
#pragma once

#include <algorithm>
#include <cstdint>

// VXL_LAUNCH(kernel, grid, block, smem, stream)(args...) is kernel<<<grid, block, smem, stream>>>
// (args...). `kernel` is a name or a function pointer (a template-id with a comma goes through a
// `const auto kernel = name<A, B>;` first). NOTE: a macro, so that a host build (the shim in
// tests/csrc/shim/cuda_runtime.h defines it first) can run the same launch line on the CPU.
#ifndef VXL_LAUNCH
#define VXL_LAUNCH(kernel, grid, block, smem, stream) kernel<<<(grid), (block), (smem), (stream)>>>
#endif

namespace vxl_fast {

inline constexpr int kMaxThreads = 256;
inline constexpr int64_t kMaxBlocks = 1 << 20;

// Threads for a row of `units` work items: a whole number of warps, at most kMaxThreads.
inline int threads_for(int64_t units) {
  const int64_t warps = (units + 31) / 32;
  return static_cast<int>(std::clamp<int64_t>(warps * 32, 32, kMaxThreads));
}

}  // namespace vxl_fast
