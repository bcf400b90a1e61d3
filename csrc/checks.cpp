#include "checks.h"

#include <c10/core/ScalarType.h>

#include <cmath>
#include <initializer_list>
#include <vector>

#include "vxl_fast/yuv_to_rgb.h"

namespace vxl_fast {

namespace {

// A tensor argument and the name the messages give it.
struct Arg {
  const char* name;
  const at::Tensor& t;
};
#define ARG(t) Arg{#t, (t)}

// Each of `args` has ref's dtype (checked in order).
void check_same_dtype(const char* op, const Arg& ref, std::initializer_list<Arg> args) {
  for (const Arg& a : args) {
    CHECK_TYPE(a.t.scalar_type() == ref.t.scalar_type(), op, ": ", a.name,
               " must have the same dtype as ", ref.name, " (", dtype_name(ref.t.scalar_type()),
               "), got ", dtype_name(a.t.scalar_type()), ".");
  }
}

// Each of `args` is on ref's device (checked in order).
void check_same_device(const char* op, const Arg& ref, std::initializer_list<Arg> args) {
  for (const Arg& a : args) {
    CHECK_VALUE(a.t.device() == ref.t.device(), op, ": ", a.name, " must be on the same device as ",
                ref.name, " (", ref.t.device(), "), got ", a.t.device(), ".");
  }
}

// Each of `args` has a contiguous last dimension (stride 1, or at most one element).
void check_last_dim_contiguous(const char* op, std::initializer_list<Arg> args) {
  for (const Arg& a : args) {
    CHECK_VALUE(a.t.size(-1) <= 1 || a.t.stride(-1) == 1, op, ": ", a.name,
                " must have a contiguous last dimension (stride 1), got stride ", a.t.stride(-1),
                ".");
  }
}

// eps is finite and non-negative.
void check_eps(const char* op, double eps) {
  CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and non-negative, got ",
              eps, ".");
}

// vec [n] holds one value per element of the rows of `rows`, which have `width` (named `dim`).
void check_row_length(const char* op, const Arg& vec, int64_t width, const char* rows,
                      const char* dim) {
  CHECK_VALUE(vec.t.size(0) == width, op, ": ", vec.name, " has ", vec.t.size(0),
              " elements but the rows of ", rows, " have ", dim, " = ", width,
              "; they must match.");
}

}  // namespace

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
  check_last_dim_contiguous(op, {ARG(frames)});
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
  check_same_device(op, ARG(frames), {ARG(out)});
  const std::vector<int64_t> expected = clip_preprocess_shape(frames.size(0), crop, patch);
  CHECK_VALUE(out.sizes() == c10::IntArrayRef(expected), op, ": out must have shape ",
              patch == 0 ? "[T, 3, crop, crop]" : "[T, (crop / patch)^2, 3 * patch^2]", " = ",
              c10::IntArrayRef(expected), ", got ", out.sizes(), ".");
  check_last_dim_contiguous(op, {ARG(out)});
}

void check_interleave_vst(const at::Tensor& raw, const at::Tensor& vst, int64_t ratio,
                          int64_t carry) {
  constexpr const char* op = "interleave_vst";
  CHECK_DIM(op, raw, 2, "[Lw, D]");
  CHECK_DIM(op, vst, 1, "[D]");
  CHECK_FLOATING(op, raw);
  check_same_dtype(op, ARG(raw), {ARG(vst)});
  check_same_device(op, ARG(raw), {ARG(vst)});
  check_row_length(op, ARG(vst), raw.size(1), "raw", "D");
  CHECK_VALUE(raw.size(0) >= 1, op, ": raw must have at least one row.");
  check_last_dim_contiguous(op, {ARG(raw), ARG(vst)});
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
  check_same_dtype(op, ARG(cache_k), {ARG(cache_v), ARG(vst_k), ARG(vst_v)});
  CHECK_DTYPE(op, cos, c10::kFloat);
  CHECK_DTYPE(op, sin, c10::kFloat);
  check_same_device(op, ARG(cache_k), {ARG(cache_v), ARG(vst_k), ARG(vst_v), ARG(cos), ARG(sin)});
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
  check_last_dim_contiguous(op, {ARG(cache_k), ARG(cache_v), ARG(vst_k), ARG(vst_v), ARG(cos),
                                 ARG(sin)});
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
  check_same_device(op, ARG(y), {ARG(u), ARG(v)});
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
  check_same_dtype(op, ARG(x), {ARG(residual), ARG(weight)});
  check_same_device(op, ARG(x), {ARG(residual), ARG(weight)});
  CHECK_VALUE(residual.sizes() == x.sizes(), op, ": residual must have the shape of x (",
              x.sizes(), "), got ", residual.sizes(), ".");
  CHECK_VALUE(x.size(-1) >= 1, op, ": x must have a non-empty last dimension, got D = 0.");
  check_row_length(op, ARG(weight), x.size(-1), "x", "D");
  check_last_dim_contiguous(op, {ARG(x), ARG(residual), ARG(weight)});
  check_eps(op, eps);
}

void check_add_layer_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                          const at::Tensor& bias, double eps) {
  constexpr const char* op = "add_layer_norm";
  CHECK_VALUE(x.dim() >= 1, op, ": x must have at least one dimension [..., D], got 0.");
  CHECK_DIM(op, weight, 1, "[D]");
  CHECK_DIM(op, bias, 1, "[D]");
  CHECK_FLOATING(op, x);
  check_same_dtype(op, ARG(x), {ARG(residual), ARG(weight), ARG(bias)});
  check_same_device(op, ARG(x), {ARG(residual), ARG(weight), ARG(bias)});
  CHECK_VALUE(residual.sizes() == x.sizes(), op, ": residual must have the shape of x (",
              x.sizes(), "), got ", residual.sizes(), ".");
  CHECK_VALUE(x.size(-1) >= 1, op, ": x must have a non-empty last dimension, got D = 0.");
  check_row_length(op, ARG(weight), x.size(-1), "x", "D");
  check_row_length(op, ARG(bias), x.size(-1), "x", "D");
  check_last_dim_contiguous(op, {ARG(x), ARG(residual), ARG(weight), ARG(bias)});
  check_eps(op, eps);
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
  check_same_dtype(op, ARG(patches), {ARG(cls), ARG(pos), ARG(weight), ARG(bias)});
  check_same_device(op, ARG(patches), {ARG(cls), ARG(pos), ARG(weight), ARG(bias)});
  const int64_t c = patches.size(2);
  CHECK_VALUE(c >= 1, op, ": patches must have a non-empty last dimension, got C = 0.");
  check_row_length(op, ARG(cls), c, "patches", "C");
  check_row_length(op, ARG(weight), c, "patches", "C");
  check_row_length(op, ARG(bias), c, "patches", "C");
  const std::vector<int64_t> pos_shape{patches.size(1) + 1, c};
  CHECK_VALUE(pos.sizes() == c10::IntArrayRef(pos_shape), op, ": pos must have shape [P + 1, C] = ",
              c10::IntArrayRef(pos_shape), ", got ", pos.sizes(), ".");
  check_last_dim_contiguous(op, {ARG(patches), ARG(cls), ARG(pos), ARG(weight), ARG(bias)});
  check_eps(op, eps);
}

void check_bias_quick_gelu(const at::Tensor& x, const at::Tensor& bias) {
  constexpr const char* op = "bias_quick_gelu";
  CHECK_VALUE(x.dim() >= 1, op, ": x must have at least one dimension [..., F], got 0.");
  CHECK_DIM(op, bias, 1, "[F]");
  CHECK_FLOATING(op, x);
  check_same_dtype(op, ARG(x), {ARG(bias)});
  check_same_device(op, ARG(x), {ARG(bias)});
  CHECK_VALUE(x.size(-1) >= 1, op, ": x must have a non-empty last dimension, got F = 0.");
  check_row_length(op, ARG(bias), x.size(-1), "x", "F");
  check_last_dim_contiguous(op, {ARG(x), ARG(bias)});
}

void check_silu_and_mul(const at::Tensor& x) {
  constexpr const char* op = "silu_and_mul";
  CHECK_VALUE(x.dim() >= 1, op, ": x must have at least one dimension [..., 2F], got 0.");
  CHECK_FLOATING(op, x);
  CHECK_VALUE(x.size(-1) >= 2 && x.size(-1) % 2 == 0, op,
              ": the last dimension of x (gate and up halves) must be a positive even number, "
              "got ", x.size(-1), ".");
  check_last_dim_contiguous(op, {ARG(x)});
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
  check_same_dtype(op, ARG(q), {ARG(k), ARG(v), ARG(cache_k), ARG(cache_v)});
  CHECK_DTYPE(op, cos, c10::kFloat);
  CHECK_DTYPE(op, sin, c10::kFloat);
  check_same_device(op, ARG(q), {ARG(k), ARG(v), ARG(cos), ARG(sin), ARG(cache_k), ARG(cache_v)});
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
  check_last_dim_contiguous(op, {ARG(q), ARG(k), ARG(v), ARG(cos), ARG(sin), ARG(cache_k),
                                 ARG(cache_v)});
  const int64_t n = q.size(0);
  CHECK_VALUE(start >= 0, op, ": start must be non-negative, got ", start, ".");
  CHECK_VALUE(start + n <= cache_k.size(1), op, ": start + n = ", start + n,
              " exceeds the cache length C = ", cache_k.size(1), ".");
  CHECK_VALUE(start + n <= cos.size(0), op, ": start + n = ", start + n,
              " exceeds the RoPE table length P = ", cos.size(0), ".");
}

}  // namespace vxl_fast
