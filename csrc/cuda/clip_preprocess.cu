// CUDA impl of vxl_fast::clip_preprocess(_out) (kernels: include/vxl_fast/clip_preprocess.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "checks.h"
#include "dispatch.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_type.h"
#include "vxl_fast/clip_preprocess.cuh"

namespace vxl_fast {
namespace {

// A ClipPlan with its taps in device memory: one int32 buffer holding, in order, the horizontal
// start, n and weight arrays, then the vertical ones.
struct DevicePlan {
  std::shared_ptr<const ClipPlan> plan;
  at::Tensor buffer;
  DeviceTaps horiz, vert;
};

void append(std::vector<int32_t>& to, const std::vector<int32_t>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

// The plan for this frame size, uploaded once per (device, height, width, size, crop).
// NOTE: one upload per distinct frame size and device (a few tens of KiB), kept for the process;
// the first call for a size therefore cannot be captured in a CUDA graph.
const DevicePlan& device_plan(const at::Tensor& frames, int64_t size, int64_t crop) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;
  static std::mutex mutex;
  // NOTE: leaked on purpose: device tensors must not be freed during static destruction, after
  // the CUDA runtime may have shut down.
  static auto* plans = new std::map<Key, DevicePlan>();
  const Key key{frames.device().index(), frames.size(1), frames.size(2), size, crop};
  const std::lock_guard<std::mutex> lock(mutex);
  const auto it = plans->find(key);
  if (it != plans->end()) {
    return it->second;
  }
  DevicePlan d;
  d.plan = cached_clip_plan(frames.size(1), frames.size(2), size, crop);
  const ClipPlan& p = *d.plan;
  std::vector<int32_t> host;
  append(host, p.horiz.start);
  append(host, p.horiz.n);
  append(host, p.horiz.weight);
  append(host, p.vert.start);
  append(host, p.vert.n);
  append(host, p.vert.weight);
  d.buffer = at::from_blob(host.data(), {static_cast<int64_t>(host.size())}, at::kInt)
                 .to(frames.device());
  const int32_t* base = d.buffer.const_data_ptr<int32_t>();
  const int64_t h_count = static_cast<int64_t>(p.horiz.start.size());
  d.horiz = DeviceTaps{base, base + h_count, base + 2 * h_count, p.horiz.taps};
  base += 2 * h_count + static_cast<int64_t>(p.horiz.weight.size());
  d.vert = DeviceTaps{base, base + crop, base + 2 * crop, p.vert.taps};
  return plans->emplace(key, std::move(d)).first->second;
}

void run_clip_preprocess(const at::Tensor& frames, int64_t size, int64_t crop,
                         c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev, int64_t patch,
                         at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(frames.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const DevicePlan& d = device_plan(frames, size, crop);
  const int64_t n_frames = frames.size(0);
  const at::Tensor scratch =
      at::empty({clip_scratch_bytes(*d.plan, n_frames, crop)}, frames.options());
  VXL_DISPATCH_FLOAT_TYPES(out.scalar_type(), "clip_preprocess", [&] {
    using T = typename CudaType<scalar_t>::type;
    ToOutput<T> sink{static_cast<T*>(out.mutable_data_ptr()),
                     clip_layout(crop, patch, out.strides().data()), {}, {}};
    for (int c = 0; c < 3; ++c) {
      sink.mean[c] = static_cast<float>(mean[c]);
      sink.stdev[c] = static_cast<float>(stdev[c]);
    }
    const cudaError_t err = launch_clip_preprocess(
        *d.plan, d.horiz, d.vert, frames.const_data_ptr<uint8_t>(), frames.stride(0),
        frames.stride(1), frames.stride(2), n_frames, crop, sink,
        scratch.mutable_data_ptr<uint8_t>(), stream);
    CHECK_CUDA_LAUNCH("clip_preprocess", err);
  });
}

at::Tensor clip_preprocess_cuda(const at::Tensor& frames, int64_t size, int64_t crop,
                                c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev,
                                c10::ScalarType dtype, int64_t patch) {
  check_clip_preprocess(frames, size, crop, mean, stdev, patch);
  check_clip_preprocess_dtype(dtype);
  at::Tensor out = at::empty(clip_preprocess_shape(frames.size(0), crop, patch),
                             frames.options().dtype(dtype));
  run_clip_preprocess(frames, size, crop, mean, stdev, patch, out);
  return out;
}

void clip_preprocess_out_cuda(const at::Tensor& frames, int64_t size, int64_t crop,
                              c10::ArrayRef<double> mean, c10::ArrayRef<double> stdev,
                              at::Tensor& out, int64_t patch) {
  check_clip_preprocess_out(frames, size, crop, mean, stdev, out, patch);
  run_clip_preprocess(frames, size, crop, mean, stdev, patch, out);
}

}  // namespace

TORCH_LIBRARY_IMPL(vxl_fast, CUDA, m) {
  m.impl("clip_preprocess", &clip_preprocess_cuda);
  m.impl("clip_preprocess_out", &clip_preprocess_out_cuda);
}

}  // namespace vxl_fast
