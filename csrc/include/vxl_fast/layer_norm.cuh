// CUDA kernels for add_layer_norm and clip_embed_layer_norm: one warp per row, no block barriers
// (layer_norm.h has the math and the order of the sums); both run add_layer_norm_warp_row.
//
// Lane l takes the chunks c = l, l + 32, ... of kChunk elements: first pass h = T(residual + x),
// stored to residual_out, and the lane's sum of h; a butterfly of warp shuffles gives every lane the
// row's sum, hence the mean; second pass reads h back for the sum of squared deviations (a second
// butterfly: rstd); third pass reads h again and writes normed. Rows whose chunks are all 16-byte
// aligned (kVector) are read and written in vector accesses.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "vxl_fast/chunk.cuh"
#include "vxl_fast/float_cast.cuh"
#include "vxl_fast/launch.cuh"
#include "vxl_fast/layer_norm.h"
#include "vxl_fast/rms_norm.cuh"

namespace vxl_fast {

// Element strides of the rows; last dimensions are contiguous, outputs are contiguous [rows, d].
template <typename T>
struct AddLayerNormParams {
  T* out;  // [rows, d]
  T* residual_out;  // [rows, d]
  const T* x;  // [rows, d], row stride x_stride
  const T* residual;  // [rows, d], row stride residual_stride
  const T* weight;  // [d]
  const T* bias;  // [d]
  int64_t rows, d, x_stride, residual_stride;
  float eps;
};

// One row, by the calling warp (its lane `lane`): h_out[i] = T(residual[i] + x[i]), then out[i] =
// normed[i]. out may be h_out (each lane reads its own chunks of h before it overwrites them).
template <typename T, bool kVector>
__device__ __forceinline__ void add_layer_norm_warp_row(int lane, const T* x, const T* residual,
                                                        const T* weight, const T* bias, int64_t d,
                                                        float eps, T* h_out, T* out) {
  const int64_t first = static_cast<int64_t>(lane) * kChunk, step = kNormLanes * kChunk;
  float sum = 0.0f;
  for (int64_t i0 = first; i0 < d; i0 += step) {
    const int64_t n = d - i0 < kChunk ? d - i0 : kChunk;
    T xv[kChunk] = {}, rv[kChunk] = {}, hv[kChunk] = {};
    load_chunk<kVector>(x + i0, n, xv);
    load_chunk<kVector>(residual + i0, n, rv);
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        hv[j] = from_float<T>(norm_add(to_float(rv[j]), to_float(xv[j])));
        sum = norm_add(sum, to_float(hv[j]));
      }
    }
    store_chunk<kVector>(h_out + i0, n, hv);
  }
  const float mean = row_mean(warp_butterfly_sum(sum), d);
  float squares = 0.0f;
  for (int64_t i0 = first; i0 < d; i0 += step) {
    const int64_t n = d - i0 < kChunk ? d - i0 : kChunk;
    T hv[kChunk] = {};
    load_chunk<kVector>(h_out + i0, n, hv);  // this lane's own stores
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        const float dev = norm_sub(to_float(hv[j]), mean);
        squares = norm_add(squares, norm_mul(dev, dev));
      }
    }
  }
  const float rstd = inv_rms(warp_butterfly_sum(squares), d, eps);
  for (int64_t i0 = first; i0 < d; i0 += step) {
    const int64_t n = d - i0 < kChunk ? d - i0 : kChunk;
    T hv[kChunk] = {}, wv[kChunk] = {}, bv[kChunk] = {}, yv[kChunk] = {};
    load_chunk<kVector>(h_out + i0, n, hv);
    load_chunk<kVector>(weight + i0, n, wv);
    load_chunk<kVector>(bias + i0, n, bv);
    for (int j = 0; j < kChunk; ++j) {
      if (j < n) {
        const float dev = norm_sub(to_float(hv[j]), mean);
        yv[j] = from_float<T>(layer_norm_affine(dev, rstd, to_float(wv[j]), to_float(bv[j])));
      }
    }
    store_chunk<kVector>(out + i0, n, yv);
  }
}

template <typename T, bool kVector>
__global__ void add_layer_norm_kernel(const AddLayerNormParams<T> p) {
  const int lane = norm_warp_lane();
  const int64_t row = norm_warp_row();
  if (row >= p.rows) {
    return;  // NOTE: a whole warp: its lanes share the row
  }
  add_layer_norm_warp_row<T, kVector>(lane, p.x + row * p.x_stride,
                                      p.residual + row * p.residual_stride, p.weight, p.bias, p.d,
                                      p.eps, p.residual_out + row * p.d, p.out + row * p.d);
}

// CLIP's embeddings and pre-LayerNorm: row j of frame f is e = (j == 0 ? cls : patches[f, j - 1]),
// out[f, j] = LayerNorm(T(e + pos[j])), the add_layer_norm row with out as its h.
template <typename T>
struct ClipEmbedLayerNormParams {
  T* out;  // [frames, tokens, d] contiguous, tokens = n_patches + 1
  const T* patches;  // [frames, n_patches, d], strides frame_stride, patch_stride
  const T* cls;  // [d]
  const T* pos;  // [tokens, d], row stride pos_stride
  const T* weight;  // [d]
  const T* bias;  // [d]
  int64_t frames, n_patches, d, frame_stride, patch_stride, pos_stride;
  float eps;
};

template <typename T, bool kVector>
__global__ void clip_embed_layer_norm_kernel(const ClipEmbedLayerNormParams<T> p) {
  const int lane = norm_warp_lane();
  const int64_t row = norm_warp_row();
  const int64_t tokens = p.n_patches + 1;
  if (row >= p.frames * tokens) {
    return;  // NOTE: a whole warp: its lanes share the row
  }
  const int64_t f = row / tokens, j = row % tokens;
  const T* e = j == 0 ? p.cls : p.patches + f * p.frame_stride + (j - 1) * p.patch_stride;
  T* out = p.out + row * p.d;
  add_layer_norm_warp_row<T, kVector>(lane, p.pos + j * p.pos_stride, e, p.weight, p.bias, p.d,
                                      p.eps, out, out);
}

// Requires 1 <= rows <= 2^31 * kNormWarpsPerBlock and d >= 1; out and residual_out contiguous.
template <typename T>
cudaError_t launch_add_layer_norm(const AddLayerNormParams<T>& p, cudaStream_t stream) {
  const bool vector = chunk_aligned<T>(p.x, p.x_stride, p.d) &&
                      chunk_aligned<T>(p.residual, p.residual_stride, p.d) &&
                      chunk_aligned<T>(p.weight, 0, p.d) && chunk_aligned<T>(p.bias, 0, p.d) &&
                      chunk_aligned<T>(p.out, p.d, p.d) && chunk_aligned<T>(p.residual_out, p.d, p.d);
  const auto kernel = vector ? add_layer_norm_kernel<T, true> : add_layer_norm_kernel<T, false>;
  VXL_LAUNCH(kernel, norm_blocks(p.rows), kNormThreads, 0, stream)(p);
  return cudaGetLastError();
}

// Requires 1 <= frames * (n_patches + 1) <= 2^31 * kNormWarpsPerBlock and d >= 1.
template <typename T>
cudaError_t launch_clip_embed_layer_norm(const ClipEmbedLayerNormParams<T>& p, cudaStream_t stream) {
  const bool vector = chunk_aligned<T>(p.patches, p.frame_stride, p.d) &&
                      chunk_aligned<T>(p.patches, p.patch_stride, p.d) &&
                      chunk_aligned<T>(p.cls, 0, p.d) && chunk_aligned<T>(p.pos, p.pos_stride, p.d) &&
                      chunk_aligned<T>(p.weight, 0, p.d) && chunk_aligned<T>(p.bias, 0, p.d) &&
                      chunk_aligned<T>(p.out, p.d, p.d);
  const auto kernel =
      vector ? clip_embed_layer_norm_kernel<T, true> : clip_embed_layer_norm_kernel<T, false>;
  VXL_LAUNCH(kernel, norm_blocks(p.frames * (p.n_patches + 1)), kNormThreads, 0, stream)(p);
  return cudaGetLastError();
}

}  // namespace vxl_fast
