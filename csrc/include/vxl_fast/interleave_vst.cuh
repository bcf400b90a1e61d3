// CUDA kernel for interleave_vst: copy raw rows and VST rows into their interleaved slots.
//
// out[j] = vst if j % (ratio + 1) == ratio - carry else raw[raw_row_of_slot(j)]  (vst_layout.h).
// The kernel moves bytes, so one instantiation per copy width serves every dtype: rows are
// copied in the widest unit (16, 8, 4, 2 or 1 bytes) that divides every address and row size.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "vxl_fast/launch.cuh"
#include "vxl_fast/vst_layout.h"

namespace vxl_fast {

template <typename Unit>
__global__ void interleave_vst_kernel(const char* __restrict__ raw, int64_t raw_row_stride_bytes,
                                      const Unit* __restrict__ vst, Unit* __restrict__ out,
                                      int64_t n_out, int64_t units_per_row, int64_t ratio,
                                      int64_t carry) {
  for (int64_t slot = blockIdx.x; slot < n_out; slot += gridDim.x) {
    const Unit* src =
        is_vst_slot(slot, ratio, carry)
            ? vst
            : reinterpret_cast<const Unit*>(raw + raw_row_of_slot(slot, ratio, carry) *
                                                      raw_row_stride_bytes);
    Unit* dst = out + slot * units_per_row;
    for (int64_t u = threadIdx.x; u < units_per_row; u += blockDim.x) {
      dst[u] = src[u];
    }
  }
}

template <typename Unit>
cudaError_t launch_interleave_vst_as(const void* raw, int64_t raw_row_stride_bytes,
                                     const void* vst, void* out, int64_t n_out,
                                     int64_t row_bytes, int64_t ratio, int64_t carry,
                                     cudaStream_t stream) {
  const int64_t units = row_bytes / static_cast<int64_t>(sizeof(Unit));
  const int64_t blocks = std::min<int64_t>(n_out, kMaxBlocks);
  VXL_LAUNCH(interleave_vst_kernel<Unit>, static_cast<unsigned>(blocks), threads_for(units), 0,
             stream)(static_cast<const char*>(raw), raw_row_stride_bytes,
                     static_cast<const Unit*>(vst), static_cast<Unit*>(out), n_out, units, ratio,
                     carry);
  return cudaGetLastError();
}

// raw: n_raw rows of row_bytes bytes, raw_row_stride_bytes apart; vst: row_bytes bytes;
// out: n_out = n_raw + num_vst(n_raw, ratio, carry) contiguous rows. Requires n_out >= 1.
inline cudaError_t launch_interleave_vst(const void* raw, int64_t raw_row_stride_bytes,
                                         const void* vst, void* out, int64_t n_out,
                                         int64_t row_bytes, int64_t ratio, int64_t carry,
                                         cudaStream_t stream) {
  const uint64_t bits = reinterpret_cast<uintptr_t>(raw) | reinterpret_cast<uintptr_t>(vst) |
                        reinterpret_cast<uintptr_t>(out) |
                        static_cast<uint64_t>(raw_row_stride_bytes) |
                        static_cast<uint64_t>(row_bytes);
  if (bits % 16 == 0) {
    return launch_interleave_vst_as<uint4>(raw, raw_row_stride_bytes, vst, out, n_out, row_bytes,
                                           ratio, carry, stream);
  }
  if (bits % 8 == 0) {
    return launch_interleave_vst_as<uint2>(raw, raw_row_stride_bytes, vst, out, n_out, row_bytes,
                                           ratio, carry, stream);
  }
  if (bits % 4 == 0) {
    return launch_interleave_vst_as<uint32_t>(raw, raw_row_stride_bytes, vst, out, n_out,
                                              row_bytes, ratio, carry, stream);
  }
  if (bits % 2 == 0) {
    return launch_interleave_vst_as<uint16_t>(raw, raw_row_stride_bytes, vst, out, n_out,
                                              row_bytes, ratio, carry, stream);
  }
  return launch_interleave_vst_as<uint8_t>(raw, raw_row_stride_bytes, vst, out, n_out, row_bytes,
                                           ratio, carry, stream);
}

}  // namespace vxl_fast
