// CPU impl of vxl_fast::interleave_vst: one memcpy per output row.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "checks.h"
#include "vxl_fast/vst_layout.h"

namespace vxl_fast {
namespace {

at::Tensor interleave_vst_cpu(const at::Tensor& raw, const at::Tensor& vst, int64_t ratio,
                              int64_t carry) {
  check_interleave_vst(raw, vst, ratio, carry);
  const int64_t n_raw = raw.size(0);
  const int64_t n_out = n_raw + num_vst(n_raw, ratio, carry);
  at::Tensor out = at::empty({n_out, raw.size(1)}, raw.options());
  const int64_t row_bytes = raw.size(1) * raw.element_size();
  const int64_t raw_stride_bytes = raw.stride(0) * raw.element_size();
  const char* src = static_cast<const char*>(raw.const_data_ptr());
  const char* vst_row = static_cast<const char*>(vst.const_data_ptr());
  char* dst = static_cast<char*>(out.mutable_data_ptr());
  // NOTE: rows per task such that a task copies at least ~64 KiB; smaller tasks cost more to
  // schedule than to copy.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, row_bytes));
  at::parallel_for(0, n_out, grain, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      const char* from = is_vst_slot(slot, ratio, carry)
                             ? vst_row
                             : src + raw_row_of_slot(slot, ratio, carry) * raw_stride_bytes;
      std::memcpy(dst + slot * row_bytes, from, row_bytes);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("interleave_vst", &interleave_vst_cpu); }

}  // namespace vxl_fast
