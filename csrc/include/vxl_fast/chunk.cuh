// Rows read and written in chunks of kChunk consecutive elements: one or two 16-byte accesses when
// the row allows it (kVector), element by element otherwise. Shared by the elementwise kernels.
#pragma once

#include <cstdint>

namespace vxl_fast {

inline constexpr int kChunk = 8;

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
