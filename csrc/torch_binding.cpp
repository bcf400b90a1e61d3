// The vxl_fast op schemas and the Python module stub. Impls live in cpu/ and cuda/.
#include <Python.h>

#include <torch/library.h>

TORCH_LIBRARY(vxl_fast, m) {
  // CLIPImageProcessor (Pillow bicubic, bit-exact): uint8 [T, H, W, 3] -> [T, 3, crop, crop], or
  // with patch p > 0 the patch rows [T, (crop / p)^2, 3 p^2] (the patch embedding's im2col).
  m.def(
      "clip_preprocess(Tensor frames, int size, int crop, float[] mean, float[] std, "
      "ScalarType dtype, int patch=0) -> Tensor");
  // clip_preprocess into a preallocated float out of that shape (e.g. a slice of a buffer).
  m.def(
      "clip_preprocess_out(Tensor frames, int size, int crop, float[] mean, float[] std, "
      "Tensor(a!) out, int patch=0) -> ()");
  // A window's rows with VST rows interleaved: [Lw, D], [D] -> [Lw + (Lw + carry) // ratio, D].
  m.def("interleave_vst(Tensor raw, Tensor vst, int ratio, int carry) -> Tensor");
  // A window's VST keys (before RoPE, RoPE'd at dst + i) and values into cache slots dst + i.
  m.def(
      "kv_compact(Tensor(a!) cache_k, Tensor(b!) cache_v, Tensor vst_k, Tensor vst_v, "
      "Tensor cos, Tensor sin, int dst) -> ()");
  // swscale's YUV 4:2:0 -> RGB24 (PyAV's rgb24, bit-exact): uint8 y [T, H, W], u, v
  // [T, (H + 1) / 2, (W + 1) / 2] (any strides: NV12's interleaved chroma as two views)
  // -> [T, H, W, 3].
  m.def("yuv420_to_rgb(Tensor y, Tensor u, Tensor v, int matrix, bool full_range) -> Tensor");
  // h = residual + x (in x's dtype), then Qwen2 RMSNorm of h with fp32 statistics -> (normed, h).
  m.def("fused_add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps) -> (Tensor, Tensor)");
  // h = residual + x (in x's dtype), then CLIP's LayerNorm of h with fp32 statistics -> (normed, h).
  m.def(
      "add_layer_norm(Tensor x, Tensor residual, Tensor weight, Tensor bias, float eps) -> "
      "(Tensor, Tensor)");
  // CLIP's embeddings + pre-LayerNorm: patches [F, P, C], cls [C], pos [P + 1, C] ->
  // LayerNorm(cat(cls, patches[f]) + pos) [F, P + 1, C], fp32 statistics, add_layer_norm's rows.
  m.def(
      "clip_embed_layer_norm(Tensor patches, Tensor cls, Tensor pos, Tensor weight, Tensor bias, "
      "float eps) -> Tensor");
  // quick_gelu(h) = h * sigmoid(1.702 h) of h = x + bias, each step rounded as PyTorch does.
  m.def("bias_quick_gelu(Tensor x, Tensor bias) -> Tensor");
  // silu(gate) * up of x = [..., 2F] = cat(gate, up) -> [..., F], each step rounded as PyTorch does.
  m.def("silu_and_mul(Tensor x) -> Tensor");
  // A step's q [n, H, d] and k RoPE'd at start + i; k, v into the cache at start + i -> q [H, n, d].
  m.def(
      "rope_kv_write(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor(a!) cache_k, "
      "Tensor(b!) cache_v, int start) -> Tensor");
}

// NOTE: an empty limited-API module. Importing it loads this library, whose static initialisers
// register the ops above with the dispatcher; the ops are then reached through torch.ops.vxl_fast.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr,
                               nullptr,               nullptr, nullptr, nullptr};
  return PyModule_Create(&module);
}
