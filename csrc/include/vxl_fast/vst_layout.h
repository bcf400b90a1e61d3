// Where the Visual Summary Tokens (VSTs) sit in one compression window's interleaved rows.
//
// A window of n_raw raw rows, compressed with `ratio` raw rows per VST and `carry` raw rows
// already consumed by the previous window's last, unfinished group, becomes
// n_raw + num_vst(n_raw, ratio, carry) rows. Output slot j holds a VST iff
//     j % (ratio + 1) == ratio - carry,
// and the raw rows fill the other slots in order.
#pragma once

#include <cstdint>

#include "vxl_fast/host_device.h"

namespace vxl_fast {

// nb = (n_raw + carry) / ratio: the k-th VST sits at slot (ratio - carry) + k (ratio + 1) and
// has (k + 1) ratio - carry raw rows before it, which is <= n_raw iff k < nb.
VXL_HOST_DEVICE int64_t num_vst(int64_t n_raw, int64_t ratio, int64_t carry) {
  return (n_raw + carry) / ratio;
}

VXL_HOST_DEVICE bool is_vst_slot(int64_t slot, int64_t ratio, int64_t carry) {
  return slot % (ratio + 1) == ratio - carry;
}

// The raw row held by a non-VST slot: the slot minus the number of VSTs before it (one per
// completed block of ratio + 1 slots, plus one if this block's VST comes earlier).
VXL_HOST_DEVICE int64_t raw_row_of_slot(int64_t slot, int64_t ratio, int64_t carry) {
  const int64_t block = slot / (ratio + 1);
  const int64_t in_block = slot % (ratio + 1);
  return slot - block - (in_block > ratio - carry ? 1 : 0);
}

}  // namespace vxl_fast
