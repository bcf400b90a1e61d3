#include "checks.h"

#include <c10/core/ScalarType.h>

#include <cmath>
#include <vector>

#include "vxl_fast/yuv_to_rgb.h"

namespace vxl_fast {

std::string dtype_name(c10::ScalarType dtype) {
  return "torch." + std::string(c10::getDtypeNames(dtype).first);
}

bool is_supported_float(c10::ScalarType dtype) {
  return dtype == c10::kFloat || dtype == c10::kHalf || dtype == c10::kBFloat16;
}

void check_clip_preprocess(const at::Tensor& frames, int64_t size, int64_t crop,
                           c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev, int64_t patch) {
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
  CHECK_VALUE(patch >= 0, op, ": patch must be non-negative (0: no patch rows), got ", patch, ".");
  CHECK_VALUE(patch == 0 || crop % patch == 0, op, ": crop (", crop,
              ") must be a multiple of patch, got patch = ", patch, ".");
}

void check_clip_preprocess_dtype(c10::ScalarType dtype) {
  CHECK_TYPE(is_supported_float(dtype),
             "clip_preprocess: dtype must be torch.float32, torch.float16 or torch.bfloat16, got ",
             dtype_name(dtype), ".");
}

std::vector<int64_t> clip_preprocess_shape(int64_t n_frames, int64_t crop, int64_t patch) {
  if (patch == 0) {
    return {n_frames, 3, crop, crop};
  }
  const int64_t grid = crop / patch;
  return {n_frames, grid * grid, 3 * patch * patch};
}

void check_clip_preprocess_out(const at::Tensor& frames, int64_t size, int64_t crop,
                               c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev,
                               const at::Tensor& out, int64_t patch) {
  constexpr const char* op = "clip_preprocess";
  check_clip_preprocess(frames, size, crop, mean, stdev, patch);
  if (patch == 0) {
    CHECK_DIM(op, out, 4, "[T, 3, crop, crop]");
  } else {
    CHECK_DIM(op, out, 3, "[T, (crop / patch)^2, 3 * patch^2]");
  }
  CHECK_FLOATING(op, out);
  CHECK_SAME_DEVICE(op, out, frames);
  const std::vector<int64_t> expected = clip_preprocess_shape(frames.size(0), crop, patch);
  CHECK_VALUE(out.sizes() == c10::IntArrayRef(expected), op, ": out must have shape ",
              patch == 0 ? "[T, 3, crop, crop]" : "[T, (crop / patch)^2, 3 * patch^2]", " = ",
              c10::IntArrayRef(expected), ", got ", out.sizes(), ".");
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

void check_kv_compact(const at::Tensor& cache_k, const at::Tensor& cache_v,
                      const at::Tensor& vst_k, const at::Tensor& vst_v, const at::Tensor& cos,
                      const at::Tensor& sin, int64_t dst) {
  constexpr const char* op = "kv_compact";
  CHECK_DIM(op, cache_k, 3, "[Hkv, C, d]");
  CHECK_DIM(op, cache_v, 3, "[Hkv, C, d]");
  CHECK_DIM(op, vst_k, 3, "[Hkv, nb, d]");
  CHECK_DIM(op, vst_v, 3, "[Hkv, nb, d]");
  CHECK_DIM(op, cos, 2, "[P, d]");
  CHECK_DIM(op, sin, 2, "[P, d]");
  CHECK_FLOATING(op, cache_k);
  CHECK_SAME_DTYPE(op, cache_v, cache_k);
  CHECK_SAME_DTYPE(op, vst_k, cache_k);
  CHECK_SAME_DTYPE(op, vst_v, cache_k);
  CHECK_DTYPE(op, cos, c10::kFloat);
  CHECK_DTYPE(op, sin, c10::kFloat);
  CHECK_SAME_DEVICE(op, cache_v, cache_k);
  CHECK_SAME_DEVICE(op, vst_k, cache_k);
  CHECK_SAME_DEVICE(op, vst_v, cache_k);
  CHECK_SAME_DEVICE(op, cos, cache_k);
  CHECK_SAME_DEVICE(op, sin, cache_k);
  CHECK_VALUE(cache_v.sizes() == cache_k.sizes(), op, ": cache_v must have the shape of cache_k (",
              cache_k.sizes(), "), got ", cache_v.sizes(), ".");
  CHECK_VALUE(vst_v.sizes() == vst_k.sizes(), op, ": vst_v must have the shape of vst_k (",
              vst_k.sizes(), "), got ", vst_v.sizes(), ".");
  CHECK_VALUE(vst_k.size(0) == cache_k.size(0) && vst_k.size(2) == cache_k.size(2), op,
              ": vst_k [Hkv, nb, d] = ", vst_k.sizes(), " and cache_k [Hkv, C, d] = ",
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
  CHECK_LAST_DIM_CONTIGUOUS(op, vst_k);
  CHECK_LAST_DIM_CONTIGUOUS(op, vst_v);
  CHECK_LAST_DIM_CONTIGUOUS(op, cos);
  CHECK_LAST_DIM_CONTIGUOUS(op, sin);
  const int64_t nb = vst_k.size(1);
  CHECK_VALUE(dst >= 0, op, ": dst must be non-negative, got ", dst, ".");
  CHECK_VALUE(dst + nb <= cache_k.size(1), op, ": dst + nb = ", dst + nb,
              " exceeds the cache length C = ", cache_k.size(1), ".");
  CHECK_VALUE(dst + nb <= cos.size(0), op, ": dst + nb = ", dst + nb,
              " exceeds the RoPE table length P = ", cos.size(0), ".");
}

void check_yuv420_to_rgb(const at::Tensor& y, const at::Tensor& u, const at::Tensor& v,
                         int64_t matrix) {
  constexpr const char* op = "yuv420_to_rgb";
  CHECK_DIM(op, y, 3, "[T, H, W]");
  CHECK_DIM(op, u, 3, "[T, (H + 1) / 2, (W + 1) / 2]");
  CHECK_DIM(op, v, 3, "[T, (H + 1) / 2, (W + 1) / 2]");
  CHECK_DTYPE(op, y, c10::kByte);
  CHECK_DTYPE(op, u, c10::kByte);
  CHECK_DTYPE(op, v, c10::kByte);
  CHECK_SAME_DEVICE(op, u, y);
  CHECK_SAME_DEVICE(op, v, y);
  CHECK_VALUE(y.size(0) >= 1 && y.size(1) >= 1 && y.size(2) >= 1, op,
              ": y must hold at least one frame of at least one pixel, got shape ", y.sizes(),
              ".");
  const std::vector<int64_t> chroma{y.size(0), (y.size(1) + 1) / 2, (y.size(2) + 1) / 2};
  CHECK_VALUE(u.sizes() == c10::IntArrayRef(chroma), op,
              ": u must have shape [T, (H + 1) / 2, (W + 1) / 2] = ", c10::IntArrayRef(chroma),
              ", got ", u.sizes(), ".");
  CHECK_VALUE(v.sizes() == c10::IntArrayRef(chroma), op,
              ": v must have shape [T, (H + 1) / 2, (W + 1) / 2] = ", c10::IntArrayRef(chroma),
              ", got ", v.sizes(), ".");
  CHECK_VALUE(0 <= matrix && matrix < kNumYuvMatrices, op, ": matrix must lie in [0, ",
              kNumYuvMatrices, ") (bt601, bt709, fcc, smpte240m, bt2020), got ", matrix, ".");
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

void check_add_layer_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                          const at::Tensor& bias, double eps) {
  constexpr const char* op = "add_layer_norm";
  CHECK_VALUE(x.dim() >= 1, op, ": x must have at least one dimension [..., D], got 0.");
  CHECK_DIM(op, weight, 1, "[D]");
  CHECK_DIM(op, bias, 1, "[D]");
  CHECK_FLOATING(op, x);
  CHECK_SAME_DTYPE(op, residual, x);
  CHECK_SAME_DTYPE(op, weight, x);
  CHECK_SAME_DTYPE(op, bias, x);
  CHECK_SAME_DEVICE(op, residual, x);
  CHECK_SAME_DEVICE(op, weight, x);
  CHECK_SAME_DEVICE(op, bias, x);
  CHECK_VALUE(residual.sizes() == x.sizes(), op, ": residual must have the shape of x (",
              x.sizes(), "), got ", residual.sizes(), ".");
  CHECK_VALUE(x.size(-1) >= 1, op, ": x must have a non-empty last dimension, got D = 0.");
  CHECK_VALUE(weight.size(0) == x.size(-1), op, ": weight has ", weight.size(0),
              " elements but the rows of x have D = ", x.size(-1), "; they must match.");
  CHECK_VALUE(bias.size(0) == x.size(-1), op, ": bias has ", bias.size(0),
              " elements but the rows of x have D = ", x.size(-1), "; they must match.");
  CHECK_LAST_DIM_CONTIGUOUS(op, x);
  CHECK_LAST_DIM_CONTIGUOUS(op, residual);
  CHECK_LAST_DIM_CONTIGUOUS(op, weight);
  CHECK_LAST_DIM_CONTIGUOUS(op, bias);
  CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and non-negative, got ",
              eps, ".");
}

void check_clip_embed_layer_norm(const at::Tensor& patches, const at::Tensor& cls,
                                 const at::Tensor& pos, const at::Tensor& weight,
                                 const at::Tensor& bias, double eps) {
  constexpr const char* op = "clip_embed_layer_norm";
  CHECK_DIM(op, patches, 3, "[F, P, C]");
  CHECK_DIM(op, cls, 1, "[C]");
  CHECK_DIM(op, pos, 2, "[P + 1, C]");
  CHECK_DIM(op, weight, 1, "[C]");
  CHECK_DIM(op, bias, 1, "[C]");
  CHECK_FLOATING(op, patches);
  CHECK_SAME_DTYPE(op, cls, patches);
  CHECK_SAME_DTYPE(op, pos, patches);
  CHECK_SAME_DTYPE(op, weight, patches);
  CHECK_SAME_DTYPE(op, bias, patches);
  CHECK_SAME_DEVICE(op, cls, patches);
  CHECK_SAME_DEVICE(op, pos, patches);
  CHECK_SAME_DEVICE(op, weight, patches);
  CHECK_SAME_DEVICE(op, bias, patches);
  const int64_t c = patches.size(2);
  CHECK_VALUE(c >= 1, op, ": patches must have a non-empty last dimension, got C = 0.");
  CHECK_VALUE(cls.size(0) == c, op, ": cls has ", cls.size(0),
              " elements but the rows of patches have C = ", c, "; they must match.");
  CHECK_VALUE(weight.size(0) == c, op, ": weight has ", weight.size(0),
              " elements but the rows of patches have C = ", c, "; they must match.");
  CHECK_VALUE(bias.size(0) == c, op, ": bias has ", bias.size(0),
              " elements but the rows of patches have C = ", c, "; they must match.");
  const std::vector<int64_t> pos_shape{patches.size(1) + 1, c};
  CHECK_VALUE(pos.sizes() == c10::IntArrayRef(pos_shape), op, ": pos must have shape [P + 1, C] = ",
              c10::IntArrayRef(pos_shape), ", got ", pos.sizes(), ".");
  CHECK_LAST_DIM_CONTIGUOUS(op, patches);
  CHECK_LAST_DIM_CONTIGUOUS(op, cls);
  CHECK_LAST_DIM_CONTIGUOUS(op, pos);
  CHECK_LAST_DIM_CONTIGUOUS(op, weight);
  CHECK_LAST_DIM_CONTIGUOUS(op, bias);
  CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and non-negative, got ",
              eps, ".");
}

void check_bias_quick_gelu(const at::Tensor& x, const at::Tensor& bias) {
  constexpr const char* op = "bias_quick_gelu";
  CHECK_VALUE(x.dim() >= 1, op, ": x must have at least one dimension [..., F], got 0.");
  CHECK_DIM(op, bias, 1, "[F]");
  CHECK_FLOATING(op, x);
  CHECK_SAME_DTYPE(op, bias, x);
  CHECK_SAME_DEVICE(op, bias, x);
  CHECK_VALUE(x.size(-1) >= 1, op, ": x must have a non-empty last dimension, got F = 0.");
  CHECK_VALUE(bias.size(0) == x.size(-1), op, ": bias has ", bias.size(0),
              " elements but the rows of x have F = ", x.size(-1), "; they must match.");
  CHECK_LAST_DIM_CONTIGUOUS(op, x);
  CHECK_LAST_DIM_CONTIGUOUS(op, bias);
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

}  // namespace vxl_fast
