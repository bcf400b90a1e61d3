#include "checks.h"

#include <c10/core/ScalarType.h>

#include <cmath>
#include <vector>

namespace vxl_fast {

std::string dtype_name(c10::ScalarType dtype) {
  return "torch." + std::string(c10::getDtypeNames(dtype).first);
}

bool is_supported_float(c10::ScalarType dtype) {
  return dtype == c10::kFloat || dtype == c10::kHalf || dtype == c10::kBFloat16;
}

void check_clip_preprocess(const at::Tensor& frames, int64_t size, int64_t crop,
                           c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev) {
  constexpr const char* op = "clip_preprocess";
  CHECK_DIM(op, frames, 4, "[T, H, W, 3]");
  CHECK_DTYPE(op, frames, c10::kByte);
  CHECK_VALUE(frames.size(3) == 3, op,
              ": frames must have 3 channels (RGB) in the last dimension, got ", frames.size(3),
              ".");
  CHECK_VALUE(frames.size(0) >= 1, op, ": frames must hold at least one frame, got T = 0.");
  CHECK_VALUE(frames.size(1) >= 1 && frames.size(2) >= 1, op,
              ": frames must have a non-empty spatial size, got H = ", frames.size(1),
              ", W = ", frames.size(2), ".");
  CHECK_LAST_DIM_CONTIGUOUS(op, frames);
  CHECK_VALUE(crop >= 1, op, ": crop must be at least 1, got ", crop, ".");
  CHECK_VALUE(size >= crop, op, ": size must be at least crop (", crop, "), got ", size, ".");
  CHECK_VALUE(mean.size() == 3, op, ": mean must have 3 values (one per channel), got ",
              mean.size(), ".");
  CHECK_VALUE(stdev.size() == 3, op, ": std must have 3 values (one per channel), got ",
              stdev.size(), ".");
}

void check_clip_preprocess_dtype(c10::ScalarType dtype) {
  CHECK_TYPE(is_supported_float(dtype),
             "clip_preprocess: dtype must be torch.float32, torch.float16 or torch.bfloat16, got ",
             dtype_name(dtype), ".");
}

void check_clip_preprocess_out(const at::Tensor& frames, int64_t size, int64_t crop,
                               c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev,
                               const at::Tensor& out) {
  constexpr const char* op = "clip_preprocess";
  check_clip_preprocess(frames, size, crop, mean, stdev);
  CHECK_DIM(op, out, 4, "[T, 3, crop, crop]");
  CHECK_FLOATING(op, out);
  CHECK_SAME_DEVICE(op, out, frames);
  const std::vector<int64_t> expected{frames.size(0), 3, crop, crop};
  CHECK_VALUE(out.sizes() == c10::IntArrayRef(expected), op,
              ": out must have shape [T, 3, crop, crop] = ", c10::IntArrayRef(expected), ", got ",
              out.sizes(), ".");
  CHECK_LAST_DIM_CONTIGUOUS(op, out);
}

void check_interleave_vst(const at::Tensor& raw, const at::Tensor& vst, int64_t ratio,
                          int64_t carry) {
  constexpr const char* op = "interleave_vst";
  CHECK_DIM(op, raw, 2, "[Lw, D]");
  CHECK_DIM(op, vst, 1, "[D]");
  CHECK_FLOATING(op, raw);
  CHECK_SAME_DTYPE(op, vst, raw);
  CHECK_SAME_DEVICE(op, vst, raw);
  CHECK_VALUE(vst.size(0) == raw.size(1), op, ": vst has ", vst.size(0),
              " elements but the rows of raw have D = ", raw.size(1), "; they must match.");
  CHECK_VALUE(raw.size(0) >= 1, op, ": raw must have at least one row.");
  CHECK_LAST_DIM_CONTIGUOUS(op, raw);
  CHECK_LAST_DIM_CONTIGUOUS(op, vst);
  CHECK_VALUE(ratio >= 1, op, ": ratio must be at least 1, got ", ratio, ".");
  CHECK_VALUE(0 <= carry && carry < ratio, op, ": carry must satisfy 0 <= carry < ratio (",
              ratio, "), got ", carry, ".");
}

void check_kv_discard(const at::Tensor& cache_k, const at::Tensor& cache_v,
                      const at::Tensor& scratch_k, const at::Tensor& scratch_v,
                      const at::Tensor& vst_index, const at::Tensor& cos, const at::Tensor& sin,
                      int64_t dst) {
  constexpr const char* op = "kv_discard";
  CHECK_DIM(op, cache_k, 3, "[Hkv, C, d]");
  CHECK_DIM(op, cache_v, 3, "[Hkv, C, d]");
  CHECK_DIM(op, scratch_k, 3, "[Hkv, R, d]");
  CHECK_DIM(op, scratch_v, 3, "[Hkv, R, d]");
  CHECK_DIM(op, vst_index, 1, "[nb]");
  CHECK_DIM(op, cos, 2, "[P, d]");
  CHECK_DIM(op, sin, 2, "[P, d]");
  CHECK_FLOATING(op, cache_k);
  CHECK_SAME_DTYPE(op, cache_v, cache_k);
  CHECK_SAME_DTYPE(op, scratch_k, cache_k);
  CHECK_SAME_DTYPE(op, scratch_v, cache_k);
  CHECK_DTYPE(op, vst_index, c10::kLong);
  CHECK_DTYPE(op, cos, c10::kFloat);
  CHECK_DTYPE(op, sin, c10::kFloat);
  CHECK_SAME_DEVICE(op, cache_v, cache_k);
  CHECK_SAME_DEVICE(op, scratch_k, cache_k);
  CHECK_SAME_DEVICE(op, scratch_v, cache_k);
  CHECK_SAME_DEVICE(op, vst_index, cache_k);
  CHECK_SAME_DEVICE(op, cos, cache_k);
  CHECK_SAME_DEVICE(op, sin, cache_k);
  CHECK_VALUE(cache_v.sizes() == cache_k.sizes(), op, ": cache_v must have the shape of cache_k (",
              cache_k.sizes(), "), got ", cache_v.sizes(), ".");
  CHECK_VALUE(scratch_v.sizes() == scratch_k.sizes(), op,
              ": scratch_v must have the shape of scratch_k (", scratch_k.sizes(), "), got ",
              scratch_v.sizes(), ".");
  CHECK_VALUE(scratch_k.size(0) == cache_k.size(0) && scratch_k.size(2) == cache_k.size(2), op,
              ": scratch_k [Hkv, R, d] = ", scratch_k.sizes(), " and cache_k [Hkv, C, d] = ",
              cache_k.sizes(), " must have the same Hkv and d.");
  const int64_t d = cache_k.size(2);
  CHECK_VALUE(d > 0 && d % 2 == 0, op, ": the head dim d must be a positive even number, got ", d,
              ".");
  CHECK_VALUE(cos.size(1) == d, op, ": cos must have d = ", d, " columns, got ", cos.size(1),
              ".");
  CHECK_VALUE(sin.sizes() == cos.sizes(), op, ": sin must have the shape of cos (", cos.sizes(),
              "), got ", sin.sizes(), ".");
  CHECK_LAST_DIM_CONTIGUOUS(op, cache_k);
  CHECK_LAST_DIM_CONTIGUOUS(op, cache_v);
  CHECK_LAST_DIM_CONTIGUOUS(op, scratch_k);
  CHECK_LAST_DIM_CONTIGUOUS(op, scratch_v);
  CHECK_LAST_DIM_CONTIGUOUS(op, cos);
  CHECK_LAST_DIM_CONTIGUOUS(op, sin);
  const int64_t nb = vst_index.size(0);
  CHECK_VALUE(dst >= 0, op, ": dst must be non-negative, got ", dst, ".");
  CHECK_VALUE(dst + nb <= cache_k.size(1), op, ": dst + nb = ", dst + nb,
              " exceeds the cache length C = ", cache_k.size(1), ".");
  CHECK_VALUE(dst + nb <= cos.size(0), op, ": dst + nb = ", dst + nb,
              " exceeds the RoPE table length P = ", cos.size(0), ".");
}

void check_fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                              const at::Tensor& weight, double eps) {
  constexpr const char* op = "fused_add_rms_norm";
  CHECK_VALUE(x.dim() >= 1, op, ": x must have at least one dimension [..., D], got 0.");
  CHECK_DIM(op, weight, 1, "[D]");
  CHECK_FLOATING(op, x);
  CHECK_SAME_DTYPE(op, residual, x);
  CHECK_SAME_DTYPE(op, weight, x);
  CHECK_SAME_DEVICE(op, residual, x);
  CHECK_SAME_DEVICE(op, weight, x);
  CHECK_VALUE(residual.sizes() == x.sizes(), op, ": residual must have the shape of x (",
              x.sizes(), "), got ", residual.sizes(), ".");
  CHECK_VALUE(x.size(-1) >= 1, op, ": x must have a non-empty last dimension, got D = 0.");
  CHECK_VALUE(weight.size(0) == x.size(-1), op, ": weight has ", weight.size(0),
              " elements but the rows of x have D = ", x.size(-1), "; they must match.");
  CHECK_LAST_DIM_CONTIGUOUS(op, x);
  CHECK_LAST_DIM_CONTIGUOUS(op, residual);
  CHECK_LAST_DIM_CONTIGUOUS(op, weight);
  CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and non-negative, got ",
              eps, ".");
}

void check_silu_and_mul(const at::Tensor& x) {
  constexpr const char* op = "silu_and_mul";
  CHECK_VALUE(x.dim() >= 1, op, ": x must have at least one dimension [..., 2F], got 0.");
  CHECK_FLOATING(op, x);
  CHECK_VALUE(x.size(-1) >= 2 && x.size(-1) % 2 == 0, op,
              ": the last dimension of x (gate and up halves) must be a positive even number, "
              "got ", x.size(-1), ".");
  CHECK_LAST_DIM_CONTIGUOUS(op, x);
}

void check_rope_kv_write(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& cache_k,
                         const at::Tensor& cache_v, int64_t start) {
  constexpr const char* op = "rope_kv_write";
  CHECK_DIM(op, q, 3, "[n, H, d]");
  CHECK_DIM(op, k, 3, "[n, Hkv, d]");
  CHECK_DIM(op, v, 3, "[n, Hkv, d]");
  CHECK_DIM(op, cos, 2, "[P, d]");
  CHECK_DIM(op, sin, 2, "[P, d]");
  CHECK_DIM(op, cache_k, 3, "[Hkv, C, d]");
  CHECK_DIM(op, cache_v, 3, "[Hkv, C, d]");
  CHECK_FLOATING(op, q);
  CHECK_SAME_DTYPE(op, k, q);
  CHECK_SAME_DTYPE(op, v, q);
  CHECK_SAME_DTYPE(op, cache_k, q);
  CHECK_SAME_DTYPE(op, cache_v, q);
  CHECK_DTYPE(op, cos, c10::kFloat);
  CHECK_DTYPE(op, sin, c10::kFloat);
  CHECK_SAME_DEVICE(op, k, q);
  CHECK_SAME_DEVICE(op, v, q);
  CHECK_SAME_DEVICE(op, cos, q);
  CHECK_SAME_DEVICE(op, sin, q);
  CHECK_SAME_DEVICE(op, cache_k, q);
  CHECK_SAME_DEVICE(op, cache_v, q);
  CHECK_VALUE(v.sizes() == k.sizes(), op, ": v must have the shape of k (", k.sizes(), "), got ",
              v.sizes(), ".");
  CHECK_VALUE(k.size(0) == q.size(0) && k.size(2) == q.size(2), op, ": k [n, Hkv, d] = ",
              k.sizes(), " and q [n, H, d] = ", q.sizes(), " must have the same n and d.");
  CHECK_VALUE(cache_v.sizes() == cache_k.sizes(), op, ": cache_v must have the shape of cache_k (",
              cache_k.sizes(), "), got ", cache_v.sizes(), ".");
  CHECK_VALUE(cache_k.size(0) == k.size(1) && cache_k.size(2) == k.size(2), op,
              ": cache_k [Hkv, C, d] = ", cache_k.sizes(), " and k [n, Hkv, d] = ", k.sizes(),
              " must have the same Hkv and d.");
  const int64_t d = q.size(2);
  CHECK_VALUE(d > 0 && d % 2 == 0, op, ": the head dim d must be a positive even number, got ", d,
              ".");
  CHECK_VALUE(cos.size(1) == d, op, ": cos must have d = ", d, " columns, got ", cos.size(1),
              ".");
  CHECK_VALUE(sin.sizes() == cos.sizes(), op, ": sin must have the shape of cos (", cos.sizes(),
              "), got ", sin.sizes(), ".");
  CHECK_LAST_DIM_CONTIGUOUS(op, q);
  CHECK_LAST_DIM_CONTIGUOUS(op, k);
  CHECK_LAST_DIM_CONTIGUOUS(op, v);
  CHECK_LAST_DIM_CONTIGUOUS(op, cos);
  CHECK_LAST_DIM_CONTIGUOUS(op, sin);
  CHECK_LAST_DIM_CONTIGUOUS(op, cache_k);
  CHECK_LAST_DIM_CONTIGUOUS(op, cache_v);
  const int64_t n = q.size(0);
  CHECK_VALUE(start >= 0, op, ": start must be non-negative, got ", start, ".");
  CHECK_VALUE(start + n <= cache_k.size(1), op, ": start + n = ", start + n,
              " exceeds the cache length C = ", cache_k.size(1), ".");
  CHECK_VALUE(start + n <= cos.size(0), op, ": start + n = ", start + n,
              " exceeds the RoPE table length P = ", cos.size(0), ".");
}

void check_kv_discard_index(const at::Tensor& vst_index, int64_t rows) {
  const auto index = vst_index.accessor<int64_t, 1>();
  for (int64_t i = 0; i < index.size(0); ++i) {
    CHECK_VALUE(0 <= index[i] && index[i] < rows,
                "kv_discard: vst_index values must lie in [0, R = ", rows, "), got ", index[i],
                " at position ", i, ".");
  }
}

}  // namespace vxl_fast
