// The torch-free CUDA kernels of csrc/include/vxl_fast, built by g++ for the host through the shim
// in shim/ and exposed to tests/csrc/host_kernels.py as a C library (ctypes). Each entry point
// runs one launcher exactly as the CUDA impl in csrc/cuda/ calls it, on host memory, and returns
// its cudaError_t.
//
// -DVXL_PLANT_BUG builds interleave_vst with a wrong index on purpose (the harness must notice).
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "vxl_fast/vst_layout.h"
#if defined(VXL_PLANT_BUG)
// The kernel forgets the carry when it maps an output slot to its raw row.
#define raw_row_of_slot(slot, ratio, carry) raw_row_of_slot(slot, ratio, 0)
#endif
#include "vxl_fast/clip_preprocess.cuh"
#include "vxl_fast/interleave_vst.cuh"
#include "vxl_fast/kv_compact.cuh"
#include "vxl_fast/layer_norm.cuh"
#include "vxl_fast/quick_gelu.cuh"
#include "vxl_fast/rms_norm.cuh"
#include "vxl_fast/rope_kv_write.cuh"
#include "vxl_fast/silu_and_mul.cuh"
#include "vxl_fast/yuv_to_rgb.cuh"

namespace {

using vxl_fast::KvCompactParams;

// dtype codes shared with host_kernels.py.
enum Dtype { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

template <typename T>
cudaError_t kv_compact_as(void* const* ptr, const int64_t* v) {
  KvCompactParams<T> p;
  p.cache_k = static_cast<T*>(ptr[0]);
  p.cache_v = static_cast<T*>(ptr[1]);
  p.vst_k = static_cast<const T*>(ptr[2]);
  p.vst_v = static_cast<const T*>(ptr[3]);
  p.cos = static_cast<const float*>(ptr[4]);
  p.sin = static_cast<const float*>(ptr[5]);
  p.cache_k_stride_h = v[0];
  p.cache_k_stride_row = v[1];
  p.cache_v_stride_h = v[2];
  p.cache_v_stride_row = v[3];
  p.vst_k_stride_h = v[4];
  p.vst_k_stride_row = v[5];
  p.vst_v_stride_h = v[6];
  p.vst_v_stride_row = v[7];
  p.cos_stride_row = v[8];
  p.sin_stride_row = v[9];
  p.heads = v[10];
  p.nb = v[11];
  p.half = v[12];
  p.dst = v[13];
  return vxl_fast::launch_kv_compact<T>(p, nullptr);
}

template <typename T>
cudaError_t clip_preprocess_as(const uint8_t* frames, const int64_t* v, const float* mean,
                               const float* stdev, void* out) {
  const int64_t n_frames = v[0], height = v[1], width = v[2], s_t = v[3], s_r = v[4],
                s_x = v[5], size = v[6], crop = v[7], patch = v[11];
  const vxl_fast::ClipPlan plan = vxl_fast::make_clip_plan(height, width, size, crop);
  // NOTE: "device memory" is host memory here, so the taps are read from the plan itself.
  const vxl_fast::DeviceTaps horiz{plan.horiz.start.data(), plan.horiz.n.data(),
                                   plan.horiz.weight.data(), plan.horiz.taps};
  const vxl_fast::DeviceTaps vert{plan.vert.start.data(), plan.vert.n.data(),
                                  plan.vert.weight.data(), plan.vert.taps};
  std::vector<uint8_t> scratch(
      static_cast<size_t>(vxl_fast::clip_scratch_bytes(plan, n_frames, crop)));
  vxl_fast::ToOutput<T> sink{static_cast<T*>(out), vxl_fast::clip_layout(crop, patch, v + 8), {},
                             {}};
  for (int c = 0; c < 3; ++c) {
    sink.mean[c] = mean[c];
    sink.stdev[c] = stdev[c];
  }
  return vxl_fast::launch_clip_preprocess(plan, horiz, vert, frames, s_t, s_r, s_x, n_frames,
                                          crop, sink, scratch.data(), nullptr);
}

template <typename T>
cudaError_t add_rms_norm_as(void* const* ptr, const int64_t* v, float eps) {
  vxl_fast::AddRmsNormParams<T> p;
  p.out = static_cast<T*>(ptr[0]);
  p.residual_out = static_cast<T*>(ptr[1]);
  p.x = static_cast<const T*>(ptr[2]);
  p.residual = static_cast<const T*>(ptr[3]);
  p.weight = static_cast<const T*>(ptr[4]);
  p.rows = v[0];
  p.d = v[1];
  p.x_stride = v[2];
  p.residual_stride = v[3];
  p.eps = eps;
  return vxl_fast::launch_add_rms_norm<T>(p, nullptr);
}

template <typename T>
cudaError_t add_layer_norm_as(void* const* ptr, const int64_t* v, float eps) {
  vxl_fast::AddLayerNormParams<T> p;
  p.out = static_cast<T*>(ptr[0]);
  p.residual_out = static_cast<T*>(ptr[1]);
  p.x = static_cast<const T*>(ptr[2]);
  p.residual = static_cast<const T*>(ptr[3]);
  p.weight = static_cast<const T*>(ptr[4]);
  p.bias = static_cast<const T*>(ptr[5]);
  p.rows = v[0];
  p.d = v[1];
  p.x_stride = v[2];
  p.residual_stride = v[3];
  p.eps = eps;
  return vxl_fast::launch_add_layer_norm<T>(p, nullptr);
}

template <typename T>
cudaError_t clip_embed_layer_norm_as(void* const* ptr, const int64_t* v, float eps) {
  vxl_fast::ClipEmbedLayerNormParams<T> p;
  p.out = static_cast<T*>(ptr[0]);
  p.patches = static_cast<const T*>(ptr[1]);
  p.cls = static_cast<const T*>(ptr[2]);
  p.pos = static_cast<const T*>(ptr[3]);
  p.weight = static_cast<const T*>(ptr[4]);
  p.bias = static_cast<const T*>(ptr[5]);
  p.frames = v[0];
  p.n_patches = v[1];
  p.d = v[2];
  p.frame_stride = v[3];
  p.patch_stride = v[4];
  p.pos_stride = v[5];
  p.eps = eps;
  return vxl_fast::launch_clip_embed_layer_norm<T>(p, nullptr);
}

template <typename T>
cudaError_t bias_quick_gelu_as(void* out, const void* x, const void* bias, const int64_t* v) {
  vxl_fast::BiasQuickGeluParams<T> p;
  p.out = static_cast<T*>(out);
  p.x = static_cast<const T*>(x);
  p.bias = static_cast<const T*>(bias);
  p.rows = v[0];
  p.width = v[1];
  p.x_stride = v[2];
  return vxl_fast::launch_bias_quick_gelu<T>(p, nullptr);
}

template <typename T>
cudaError_t silu_and_mul_as(void* out, const void* x, const int64_t* v) {
  vxl_fast::SiluAndMulParams<T> p;
  p.out = static_cast<T*>(out);
  p.x = static_cast<const T*>(x);
  p.rows = v[0];
  p.width = v[1];
  p.x_stride = v[2];
  return vxl_fast::launch_silu_and_mul<T>(p, nullptr);
}

template <typename T>
cudaError_t rope_kv_write_as(void* const* ptr, const int64_t* v) {
  vxl_fast::RopeKvWriteParams<T> p;
  p.q_out = static_cast<T*>(ptr[0]);
  p.cache_k = static_cast<T*>(ptr[1]);
  p.cache_v = static_cast<T*>(ptr[2]);
  p.q = static_cast<const T*>(ptr[3]);
  p.k = static_cast<const T*>(ptr[4]);
  p.v = static_cast<const T*>(ptr[5]);
  p.cos = static_cast<const float*>(ptr[6]);
  p.sin = static_cast<const float*>(ptr[7]);
  p.q_stride_row = v[0];
  p.q_stride_h = v[1];
  p.k_stride_row = v[2];
  p.k_stride_h = v[3];
  p.v_stride_row = v[4];
  p.v_stride_h = v[5];
  p.cache_k_stride_h = v[6];
  p.cache_k_stride_row = v[7];
  p.cache_v_stride_h = v[8];
  p.cache_v_stride_row = v[9];
  p.cos_stride_row = v[10];
  p.sin_stride_row = v[11];
  p.n = v[12];
  p.heads = v[13];
  p.kv_heads = v[14];
  p.half = v[15];
  p.start = v[16];
  return vxl_fast::launch_rope_kv_write<T>(p, nullptr);
}

// out[w * 32 * 5 + k * 32 + lane] = the value lane reads at shuffle k (lane masks 16 .. 1) when
// every lane offers w * 32 + lane; lanes >= `active` of each warp return before shuffling.
__global__ void shuffle_probe_kernel(float* out, unsigned active) {
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane >= active) {
    return;
  }
  int k = 0;
  for (int o = 16; o > 0; o /= 2, ++k) {
    out[(warp * 5 + k) * 32 + lane] = __shfl_xor_sync(0xffffffffu, static_cast<float>(warp * 32 + lane), o);
  }
}

}  // namespace

extern "C" {

// 0: blocks and threads in index order; else the seed of a shuffled launch order.
void vxl_host_set_order(uint64_t seed) { vxl_host::order_seed = seed; }

// Whether this build compiled the device branches (-D__CUDA_ARCH__).
int vxl_host_cuda_arch() {
#if defined(__CUDA_ARCH__)
  return __CUDA_ARCH__;
#else
  return 0;
#endif
}

void vxl_host_float2half(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = __float2half_rn(x[i]).x;
  }
}

void vxl_host_float2bfloat16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = __float2bfloat16_rn(x[i]).x;
  }
}

void vxl_host_half2float(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = __half2float(__half{x[i]});
  }
}

// launch_interleave_vst (csrc/cuda/interleave_vst.cu).
int vxl_host_interleave_vst(const void* raw, int64_t raw_row_stride_bytes, const void* vst,
                            void* out, int64_t n_out, int64_t row_bytes, int64_t ratio,
                            int64_t carry) {
  return vxl_fast::launch_interleave_vst(raw, raw_row_stride_bytes, vst, out, n_out, row_bytes,
                                         ratio, carry, nullptr);
}

// launch_kv_compact (csrc/cuda/kv_compact.cu): ptr = cache_k, cache_v, vst_k, vst_v, cos, sin;
// v = the 10 strides of KvCompactParams in order, heads, nb, half, dst.
int vxl_host_kv_compact(int dtype, void* const* ptr, const int64_t* v) {
  switch (dtype) {
    case kFloat32:
      return kv_compact_as<float>(ptr, v);
    case kFloat16:
      return kv_compact_as<__half>(ptr, v);
    case kBFloat16:
      return kv_compact_as<__nv_bfloat16>(ptr, v);
  }
  return cudaErrorInvalidValue;
}

// launch_add_rms_norm (csrc/cuda/fused_add_rms_norm.cu): ptr = out, residual_out, x, residual,
// weight; v = rows, d, x row stride, residual row stride.
int vxl_host_fused_add_rms_norm(int dtype, void* const* ptr, const int64_t* v, float eps) {
  switch (dtype) {
    case kFloat32:
      return add_rms_norm_as<float>(ptr, v, eps);
    case kFloat16:
      return add_rms_norm_as<__half>(ptr, v, eps);
    case kBFloat16:
      return add_rms_norm_as<__nv_bfloat16>(ptr, v, eps);
  }
  return cudaErrorInvalidValue;
}

// launch_add_layer_norm (csrc/cuda/add_layer_norm.cu): ptr = out, residual_out, x, residual,
// weight, bias; v = rows, d, x row stride, residual row stride.
int vxl_host_add_layer_norm(int dtype, void* const* ptr, const int64_t* v, float eps) {
  switch (dtype) {
    case kFloat32:
      return add_layer_norm_as<float>(ptr, v, eps);
    case kFloat16:
      return add_layer_norm_as<__half>(ptr, v, eps);
    case kBFloat16:
      return add_layer_norm_as<__nv_bfloat16>(ptr, v, eps);
  }
  return cudaErrorInvalidValue;
}

// launch_clip_embed_layer_norm (csrc/cuda/clip_embed_layer_norm.cu): ptr = out, patches, cls, pos,
// weight, bias; v = frames, P, C, patches' frame and patch strides, pos row stride.
int vxl_host_clip_embed_layer_norm(int dtype, void* const* ptr, const int64_t* v, float eps) {
  switch (dtype) {
    case kFloat32:
      return clip_embed_layer_norm_as<float>(ptr, v, eps);
    case kFloat16:
      return clip_embed_layer_norm_as<__half>(ptr, v, eps);
    case kBFloat16:
      return clip_embed_layer_norm_as<__nv_bfloat16>(ptr, v, eps);
  }
  return cudaErrorInvalidValue;
}

// launch_bias_quick_gelu (csrc/cuda/bias_quick_gelu.cu): v = rows, F, x row stride.
int vxl_host_bias_quick_gelu(int dtype, void* out, const void* x, const void* bias, const int64_t* v) {
  switch (dtype) {
    case kFloat32:
      return bias_quick_gelu_as<float>(out, x, bias, v);
    case kFloat16:
      return bias_quick_gelu_as<__half>(out, x, bias, v);
    case kBFloat16:
      return bias_quick_gelu_as<__nv_bfloat16>(out, x, bias, v);
  }
  return cudaErrorInvalidValue;
}

// launch_silu_and_mul (csrc/cuda/silu_and_mul.cu): v = rows, F, x row stride.
int vxl_host_silu_and_mul(int dtype, void* out, const void* x, const int64_t* v) {
  switch (dtype) {
    case kFloat32:
      return silu_and_mul_as<float>(out, x, v);
    case kFloat16:
      return silu_and_mul_as<__half>(out, x, v);
    case kBFloat16:
      return silu_and_mul_as<__nv_bfloat16>(out, x, v);
  }
  return cudaErrorInvalidValue;
}

// launch_rope_kv_write (csrc/cuda/rope_kv_write.cu): ptr = q_out, cache_k, cache_v, q, k, v, cos,
// sin; v = the 12 strides of RopeKvWriteParams in order, n, heads, kv_heads, half, start.
int vxl_host_rope_kv_write(int dtype, void* const* ptr, const int64_t* v) {
  switch (dtype) {
    case kFloat32:
      return rope_kv_write_as<float>(ptr, v);
    case kFloat16:
      return rope_kv_write_as<__half>(ptr, v);
    case kBFloat16:
      return rope_kv_write_as<__nv_bfloat16>(ptr, v);
  }
  return cudaErrorInvalidValue;
}

// The shim's warp shuffles: shuffle_probe_kernel on `threads` threads (one block).
int vxl_host_shuffle_probe(float* out, unsigned threads, unsigned active) {
  VXL_LAUNCH(shuffle_probe_kernel, 1, threads, 0, nullptr)(out, active);
  return cudaGetLastError();
}

// launch_clip_preprocess (csrc/cuda/clip_preprocess.cu): v = T, H, W, the 3 frame strides, size,
// crop, the output strides (t, c, y for [T, 3, crop, crop]; t, row and unused for patch rows),
// patch; out: of dtype, as clip_layout lays it out.
int vxl_host_clip_preprocess(int dtype, const uint8_t* frames, const int64_t* v, const float* mean,
                             const float* stdev, void* out) {
  switch (dtype) {
    case kFloat32:
      return clip_preprocess_as<float>(frames, v, mean, stdev, out);
    case kFloat16:
      return clip_preprocess_as<__half>(frames, v, mean, stdev, out);
    case kBFloat16:
      return clip_preprocess_as<__nv_bfloat16>(frames, v, mean, stdev, out);
  }
  return cudaErrorInvalidValue;
}

// launch_yuv420_to_rgb (csrc/cuda/yuv_to_rgb.cu): planes = y, u, v; v = T, H, W, the 3 strides
// of y, u and v (frame, row, column) in that order, matrix, full_range; out: [T, H, W, 3].
int vxl_host_yuv420_to_rgb(const uint8_t* const* planes, const int64_t* v, uint8_t* out) {
  const vxl_fast::YuvToRgbParams p{{planes[0], v[3], v[4], v[5]},
                                   {planes[1], v[6], v[7], v[8]},
                                   {planes[2], v[9], v[10], v[11]},
                                   out,
                                   v[1],
                                   v[2],
                                   vxl_fast::yuv_to_rgb_coeffs(v[12], v[13] != 0)};
  return vxl_fast::launch_yuv420_to_rgb(p, v[0], nullptr);
}

}  // extern "C"
