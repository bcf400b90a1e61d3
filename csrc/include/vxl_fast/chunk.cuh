// Rows read and written in chunks of kChunk consecutive elements: one or two 16-byte accesses when
// the row allows it (kVector), element by element otherwise. Shared by the elementwise kernels.
#pragma once

#include <algorithm>
#include <cstdint>

#include "vxl_fast/launch.cuh"

namespace vxl_fast {

inline constexpr int kChunk = 8;

// Calls op(row, i0, n) for the chunks [i0, i0 + n), n <= kChunk, of every row of a [rows, width]
// extent: a thread per chunk, grid-stride over all rows' chunks.
template <typename Op>
__device__ __forceinline__ void for_each_chunk(int64_t rows, int64_t width, const Op& op) {
  const int64_t chunks = (width + kChunk - 1) / kChunk;
  const int64_t tasks = rows * chunks;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t task = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; task < tasks;
       task += step) {
    const int64_t i0 = (task % chunks) * kChunk;
    op(task / chunks, i0, width - i0 < kChunk ? width - i0 : kChunk);
  }
}

// Blocks of kMaxThreads threads for for_each_chunk over [rows, width] (at most kMaxBlocks).
inline unsigned chunk_blocks(int64_t rows, int64_t width) {
  const int64_t tasks = rows * ((width + kChunk - 1) / kChunk);
  return static_cast<unsigned>(std::min<int64_t>((tasks + kMaxThreads - 1) / kMaxThreads, kMaxBlocks));
}

// kChunk elements, aligned for 16-byte accesses (16 bytes for 16-bit types, 32 for float).
template <typename T>
struct alignas(16) Chunk {
  T v[kChunk];
};

// Whether every row of a [rows, width] view (row stride `stride` elements) starting at `ptr` can be
// accessed in whole 16-byte-aligned chunks.
template <typename T>
inline bool chunk_aligned(const void* ptr, int64_t stride, int64_t width) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 &&
         (stride * static_cast<int64_t>(sizeof(T))) % 16 == 0 && width % kChunk == 0;
}

// v[0 .. n) = src[0 .. n); kVector requires n == kChunk and a 16-byte aligned src.
template <bool kVector, typename T>
__device__ __forceinline__ void load_chunk(const T* src, int64_t n, T (&v)[kChunk]) {
  if constexpr (kVector) {
    const Chunk<T> c = *reinterpret_cast<const Chunk<T>*>(src);
    for (int j = 0; j < kChunk; ++j) {
      v[j] = c.v[j];
    }
  } else {
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        v[j] = src[j];
      }
    }
  }
}

// dst[0 .. n) = v[0 .. n); kVector requires n == kChunk and a 16-byte aligned dst.
template <bool kVector, typename T>
__device__ __forceinline__ void store_chunk(T* dst, int64_t n, const T (&v)[kChunk]) {
  if constexpr (kVector) {
    Chunk<T> c;
    for (int j = 0; j < kChunk; ++j) {
      c.v[j] = v[j];
    }
    *reinterpret_cast<Chunk<T>*>(dst) = c;
  } else {
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        dst[j] = v[j];
      }
    }
  }
}

}  // namespace vxl_fast
