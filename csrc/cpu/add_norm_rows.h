// The CPU impls' driver of the residual-add norms (add_layer_norm, fused_add_rms_norm): x and
// residual [..., d] as rows, the two outputs allocated, the rows split into parallel tasks.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <tuple>

namespace vxl_fast {

// (normed, h) [..., d]: row(x_row, residual_row, h_row, normed_row) for every row of x and
// residual (last dims contiguous, element type T), h and normed contiguous.
template <typename T, typename Row>
std::tuple<at::Tensor, at::Tensor> add_norm_rows(const at::Tensor& x, const at::Tensor& residual,
                                                 const Row& row) {
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor residual_out = at::empty(x.sizes(), x.options());
  const int64_t d = x.size(-1);
  const at::Tensor x2 = x.reshape({-1, d});
  const at::Tensor r2 = residual.reshape({-1, d});
  const T* xs = x2.const_data_ptr<T>();
  const T* rs = r2.const_data_ptr<T>();
  T* ys = out.mutable_data_ptr<T>();
  T* hs = residual_out.mutable_data_ptr<T>();
  const int64_t x_stride = x2.stride(0), r_stride = r2.stride(0);
  // NOTE: rows per task such that a task touches at least ~16K elements.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / d);
  at::parallel_for(0, x2.size(0), grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      row(xs + r * x_stride, rs + r * r_stride, hs + r * d, ys + r * d);
    }
  });
  return {out, residual_out};
}

}  // namespace vxl_fast
