// YUV 4:2:0 -> RGB24 as FFmpeg's swscale converts it for PyAV's frame.to_ndarray(format="rgb24")
// on x86-64 (the unscaled yuv2rgb fast path that a frame of even height takes; measured bit for
// bit against PyAV 18.1 / libswscale 9.5, see tests/ops/test_yuv_to_rgb.py). Shared by the CPU
// impl and the CUDA kernel (yuv_to_rgb.cuh).
//
// Chroma is not interpolated: pixel (r, x) takes chroma sample (r / 2, x / 2). Every term is a
// 16-bit fixed-point product that keeps the high half (floor), then the sum is clamped
// (yuv_chroma, yuv_to_rgb_pixel):
//     Y' = ((8 y - y_offset) * y_coeff) >> 16
//     R = clamp(Y' + (((8 v - 1024) * v2r) >> 16))
//     G = clamp(Y' + (((8 u - 1024) * u2g) >> 16) + (((8 v - 1024) * v2g) >> 16))
//     B = clamp(Y' + (((8 u - 1024) * u2b) >> 16))
// The coefficients come from the matrix's (crv, cbu, cgu, cgv) in 1/65536 units, scaled for the
// range: limited (16..235 luma) multiplies luma by 255/219 and subtracts 16; full range (yuvj,
// color_range=jpeg) scales the chroma coefficients by 224/255 instead.
#pragma once

#include <cstdint>

#include "vxl_fast/host_device.h"

namespace vxl_fast {

// The matrices swscale knows, in the order of the op's `matrix` argument.
enum class YuvMatrix : int64_t { kBt601 = 0, kBt709 = 1, kFcc = 2, kSmpte240m = 3, kBt2020 = 4 };
inline constexpr int64_t kNumYuvMatrices = 5;

struct YuvToRgbCoeffs {
  int32_t y_coeff, y_offset, v2r, u2g, v2g, u2b;
};

namespace detail {

// (crv, cbu, cgu, cgv): V -> R, U -> B, U -> G and V -> G, times 65536 (for 255/224 chroma).
inline constexpr int64_t kYuvMatrixTable[kNumYuvMatrices][4] = {
    {104597, 132201, 25675, 53279},  // BT.601 (BT.470BG, SMPTE 170M, unspecified)
    {117489, 138438, 13975, 34925},  // BT.709
    {104448, 132798, 24759, 53109},  // FCC
    {117579, 136230, 16907, 35559},  // SMPTE 240M
    {110013, 140363, 12277, 42626},  // BT.2020 (non-constant luminance)
};

// x / 65536 rounded to the nearest (ties up), saturated to int16.
inline int32_t round_to_int16(int64_t x) {
  const int64_t r = (x + (int64_t{1} << 15)) >> 16;
  return static_cast<int32_t>(r < -0x7FFF ? -0x8000 : (r > 0x7FFF ? 0x7FFF : r));
}

}  // namespace detail

// The six coefficients for `matrix` (0 <= matrix < kNumYuvMatrices) and the range.
inline YuvToRgbCoeffs yuv_to_rgb_coeffs(int64_t matrix, bool full_range) {
  const int64_t* m = detail::kYuvMatrixTable[matrix];
  int64_t crv = m[0], cbu = m[1], cgu = -m[2], cgv = -m[3];
  int64_t cy = int64_t{1} << 16, oy = 0;
  if (full_range) {
    crv = crv * 224 / 255;
    cbu = cbu * 224 / 255;
    cgu = cgu * 224 / 255;
    cgv = cgv * 224 / 255;
  } else {
    cy = cy * 255 / 219;
    oy = int64_t{16} << 16;
  }
  YuvToRgbCoeffs c;
  c.y_coeff = detail::round_to_int16(cy * 8192);
  c.y_offset = detail::round_to_int16(oy * 8);
  c.v2r = detail::round_to_int16(crv * 8192);
  c.u2g = detail::round_to_int16(cgu * 8192);
  c.v2g = detail::round_to_int16(cgv * 8192);
  c.u2b = detail::round_to_int16(cbu * 8192);
  return c;
}

VXL_HOST_DEVICE uint8_t clamp_u8(int32_t x) {
  return static_cast<uint8_t>(x < 0 ? 0 : (x > 255 ? 255 : x));
}

// The chroma terms of the formulas above, shared by the (up to) 2 x 2 pixels of a sample.
// NOTE: the products fit in int32 and >> of a negative int is an arithmetic shift (C++20),
// i.e. the high half that pmulhw keeps.
struct YuvChroma {
  int32_t r, g, b;
};

VXL_HOST_DEVICE YuvChroma yuv_chroma(const YuvToRgbCoeffs& c, uint8_t u, uint8_t v) {
  const int32_t cu = 8 * static_cast<int32_t>(u) - 1024;
  const int32_t cv = 8 * static_cast<int32_t>(v) - 1024;
  return YuvChroma{(cv * c.v2r) >> 16, ((cu * c.u2g) >> 16) + ((cv * c.v2g) >> 16),
                   (cu * c.u2b) >> 16};
}

// One pixel: rgb[0..2] from its luma and the chroma terms of its sample.
VXL_HOST_DEVICE void yuv_to_rgb_pixel(const YuvToRgbCoeffs& c, uint8_t y, const YuvChroma& chroma,
                                      uint8_t* rgb) {
  const int32_t luma = ((8 * static_cast<int32_t>(y) - c.y_offset) * c.y_coeff) >> 16;
  rgb[0] = clamp_u8(luma + chroma.r);
  rgb[1] = clamp_u8(luma + chroma.g);
  rgb[2] = clamp_u8(luma + chroma.b);
}

// A uint8 plane of a batch: (t, r, x) at data[t * frame_stride + r * row_stride + x * col_stride].
struct YuvPlane {
  const uint8_t* data;
  int64_t frame_stride, row_stride, col_stride;
};

struct YuvToRgbParams {
  YuvPlane y, u, v;  // y [T, H, W]; u, v [T, (H + 1) / 2, (W + 1) / 2]
  uint8_t* out;  // contiguous [T, H, W, 3]
  int64_t height, width;
  YuvToRgbCoeffs coeffs;
};

// The sources of output row `row` (= t * H + r) of the batch.
struct YuvRow {
  const uint8_t *y, *u, *v;
  uint8_t* out;
};

VXL_HOST_DEVICE YuvRow yuv_row(const YuvToRgbParams& p, int64_t row) {
  const int64_t t = row / p.height, r = row % p.height;
  return YuvRow{p.y.data + t * p.y.frame_stride + r * p.y.row_stride,
                p.u.data + t * p.u.frame_stride + (r / 2) * p.u.row_stride,
                p.v.data + t * p.v.frame_stride + (r / 2) * p.v.row_stride,
                p.out + row * p.width * 3};
}

// Pixel x of a row.
VXL_HOST_DEVICE void yuv_to_rgb_pixel_at(const YuvToRgbParams& p, const YuvRow& row, int64_t x) {
  const int64_t c = x / 2;
  yuv_to_rgb_pixel(p.coeffs, row.y[x * p.y.col_stride],
                   yuv_chroma(p.coeffs, row.u[c * p.u.col_stride], row.v[c * p.v.col_stride]),
                   row.out + x * 3);
}

// A whole row, each chroma sample's terms computed once for its two pixels (the CPU's loop).
inline void yuv_to_rgb_row(const YuvToRgbParams& p, const YuvRow& row) {
  for (int64_t x = 0; x < p.width; x += 2) {
    const int64_t c = x / 2;
    const YuvChroma chroma =
        yuv_chroma(p.coeffs, row.u[c * p.u.col_stride], row.v[c * p.v.col_stride]);
    yuv_to_rgb_pixel(p.coeffs, row.y[x * p.y.col_stride], chroma, row.out + x * 3);
    if (x + 1 < p.width) {
      yuv_to_rgb_pixel(p.coeffs, row.y[(x + 1) * p.y.col_stride], chroma, row.out + x * 3 + 3);
    }
  }
}

}  // namespace vxl_fast
