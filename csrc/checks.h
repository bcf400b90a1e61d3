// Argument checks shared by the CPU and CUDA impls. Each failure raises with a full sentence that
// names the op and the offending value; ValueError/TypeError on the Python side, the same
// sentences as the reference twins in python/vxl_fast/ops/reference.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <string>
#include <vector>

#define CHECK_VALUE(cond, ...) TORCH_CHECK_VALUE(cond, __VA_ARGS__)
#define CHECK_TYPE(cond, ...) TORCH_CHECK_TYPE(cond, __VA_ARGS__)

#define CHECK_DIM(op, t, n, shape)                                                            \
  CHECK_VALUE((t).dim() == (n), op, ": " #t " must be a " #n "-D tensor " shape ", got ",      \
              (t).dim(), " dimensions.")

#define CHECK_DTYPE(op, t, dtype)                                                             \
  CHECK_TYPE((t).scalar_type() == (dtype), op, ": " #t " must be ",                           \
             vxl_fast::dtype_name(dtype), ", got ", vxl_fast::dtype_name((t).scalar_type()), \
             ".")

#define CHECK_FLOATING(op, t)                                                                 \
  CHECK_TYPE(vxl_fast::is_supported_float((t).scalar_type()),                                 \
             op, ": " #t " must be torch.float32, torch.float16 or torch.bfloat16, got ",      \
             vxl_fast::dtype_name((t).scalar_type()), ".")

namespace vxl_fast {

// "torch.float32" etc., as Python prints a dtype.
std::string dtype_name(c10::ScalarType dtype);

bool is_supported_float(c10::ScalarType dtype);

// frames uint8 [T >= 1, H >= 1, W >= 1, 3], last dim contiguous; 1 <= crop <= size; 3 means/stds;
// patch 0 or a divisor of crop.
void check_clip_preprocess(const at::Tensor& frames, int64_t size, int64_t crop,
                           c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev, int64_t patch);

// The output dtype of the functional clip_preprocess: float32, float16 or bfloat16.
void check_clip_preprocess_dtype(c10::ScalarType dtype);

// clip_preprocess's output shape: [T, 3, crop, crop] (patch 0) or [T, (crop / patch)^2, 3 patch^2].
std::vector<int64_t> clip_preprocess_shape(int64_t n_frames, int64_t crop, int64_t patch);

// check_clip_preprocess, then out: float of clip_preprocess_shape on the frames' device, last dim
// contiguous.
void check_clip_preprocess_out(const at::Tensor& frames, int64_t size, int64_t crop,
                               c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev,
                               const at::Tensor& out, int64_t patch);

void check_interleave_vst(const at::Tensor& raw, const at::Tensor& vst, int64_t ratio,
                          int64_t carry);

void check_kv_compact(const at::Tensor& cache_k, const at::Tensor& cache_v,
                      const at::Tensor& vst_k, const at::Tensor& vst_v, const at::Tensor& cos,
                      const at::Tensor& sin, int64_t dst);

// y uint8 [T >= 1, H >= 1, W >= 1]; u, v uint8 [T, (H + 1) / 2, (W + 1) / 2] on y's device (any
// strides); 0 <= matrix < kNumYuvMatrices.
void check_yuv420_to_rgb(const at::Tensor& y, const at::Tensor& u, const at::Tensor& v,
                         int64_t matrix);

// x, residual [..., D] of one float dtype and device, weight [D]; last dims contiguous; D >= 1;
// eps finite and non-negative.
void check_fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                              const at::Tensor& weight, double eps);

// x, residual [..., D] of one float dtype and device, weight and bias [D]; last dims contiguous;
// D >= 1; eps finite and non-negative.
void check_add_layer_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                          const at::Tensor& bias, double eps);

// patches [F, P, C], C >= 1, cls, weight and bias [C], pos [P + 1, C], of one float dtype and
// device; last dims contiguous; eps finite and non-negative.
void check_clip_embed_layer_norm(const at::Tensor& patches, const at::Tensor& cls,
                                 const at::Tensor& pos, const at::Tensor& weight,
                                 const at::Tensor& bias, double eps);

// x float [..., F], F >= 1, bias [F] of x's dtype and device; last dims contiguous.
void check_bias_quick_gelu(const at::Tensor& x, const at::Tensor& bias);

// x float [..., 2F], F >= 1, last dim contiguous.
void check_silu_and_mul(const at::Tensor& x);

// q [n, H, d], k and v [n, Hkv, d], cache_k and cache_v [Hkv, C, d] of one float dtype, cos and sin
// float32 [P, d]; one device; last dims contiguous; d even; 0 <= start, start + n <= C and P.
void check_rope_kv_write(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& cache_k,
                         const at::Tensor& cache_v, int64_t start);

}  // namespace vxl_fast
