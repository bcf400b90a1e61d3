// CPU impl of vxl_fast::clip_embed_layer_norm: one task per row range, add_layer_norm's row
// (layer_norm.h), so the CPU impl and the CUDA kernel agree bit for bit.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "checks.h"
#include "dispatch.h"
#include "vxl_fast/layer_norm.h"

namespace vxl_fast {
namespace {

template <typename T>
void clip_embed_layer_norm_rows(const at::Tensor& patches, const at::Tensor& cls,
                                const at::Tensor& pos, const at::Tensor& weight,
                                const at::Tensor& bias, float eps, const at::Tensor& out) {
  const int64_t n_patches = patches.size(1), tokens = n_patches + 1, d = patches.size(2);
  const T* ps = patches.const_data_ptr<T>();
  const T* c = cls.const_data_ptr<T>();
  const T* pe = pos.const_data_ptr<T>();
  const T* w = weight.const_data_ptr<T>();
  const T* b = bias.const_data_ptr<T>();
  T* ys = out.mutable_data_ptr<T>();
  const int64_t frame_stride = patches.stride(0), patch_stride = patches.stride(1);
  const int64_t pos_stride = pos.stride(0);
  // NOTE: rows per task such that a task touches at least ~16K elements.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / d);
  at::parallel_for(0, out.size(0) * tokens, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t f = row / tokens, j = row % tokens;
      const T* e = j == 0 ? c : ps + f * frame_stride + (j - 1) * patch_stride;
      T* y = ys + row * d;
      add_layer_norm_row(pe + j * pos_stride, e, w, b, d, eps, y, y);
    }
  });
}

at::Tensor clip_embed_layer_norm_cpu(const at::Tensor& patches, const at::Tensor& cls,
                                     const at::Tensor& pos, const at::Tensor& weight,
                                     const at::Tensor& bias, double eps) {
  check_clip_embed_layer_norm(patches, cls, pos, weight, bias, eps);
  at::Tensor out = at::empty({patches.size(0), patches.size(1) + 1, patches.size(2)},
                             patches.options());
  VXL_DISPATCH_FLOAT_TYPES(patches.scalar_type(), "clip_embed_layer_norm", [&] {
    clip_embed_layer_norm_rows<scalar_t>(patches, cls, pos, weight, bias, static_cast<float>(eps),
                                         out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CPU, m) { m.impl("clip_embed_layer_norm", &clip_embed_layer_norm_cpu); }

}  // namespace vxl_fast
