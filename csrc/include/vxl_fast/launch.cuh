// Launch geometry shared by the kernels: one thread block per row, threads strided over the row.
#pragma once

#include <algorithm>
#include <cstdint>

namespace vxl_fast {

inline constexpr int kMaxThreads = 256;
inline constexpr int64_t kMaxBlocks = 1 << 20;

// Threads for a row of `units` work items: a whole number of warps, at most kMaxThreads.
inline int threads_for(int64_t units) {
  const int64_t warps = (units + 31) / 32;
  return static_cast<int>(std::clamp<int64_t>(warps * 32, 32, kMaxThreads));
}

}  // namespace vxl_fast
