"""The vision tower: attention reaches SDPA in the layout its fused kernels need, the bf16 tower's
error against fp32 is within twice that of a plain bf16 CLIP written out here, and the fused
embeddings + pre-LayerNorm give the PyTorch tower's result."""

from __future__ import annotations

import copy


import torch
import torch.nn.functional as F

from conftest import GOLDEN, CountOps, load_model, needs_ext
from vxl_fast import ops
from vxl_fast.video.preprocess import patch_rows


def _plain_clip(tower, pixels):
    """CLIP as written in the paper, on pixels [B, 3, S, S]: a strided conv for the patches,
    softmax(q·kᵀ/√d)·v by hand."""
    emb = tower.embeddings
    x = F.conv2d(pixels, emb.patch_embedding.weight, stride=emb.patch_embedding.stride).flatten(2).transpose(1, 2)
    cls = emb.class_embedding.expand(x.shape[0], 1, -1)
    x = tower.pre_layrnorm(torch.cat([cls, x], 1) + emb.position_embedding.weight)
    for layer in tower.encoder.layers:
        attn = layer.self_attn
        b, n, c = x.shape
        h = attn.num_heads
        q, k, v = attn.qkv_proj(layer.layer_norm1(x)).view(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * (c // h) ** -0.5
        x = x + attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))
        y = layer.mlp.fc1(layer.layer_norm2(x))
        x = x + layer.mlp.fc2(y * torch.sigmoid(1.702 * y))
    return x[:, 1:]


def test_bf16_tower_within_twice_the_plain_bf16_error():
    model = load_model(GOLDEN / "medium-videoxl")  # head dim 64, like CLIP ViT-L
    tower32 = model.model.vision
    tower16 = copy.deepcopy(tower32).to(torch.bfloat16)
    torch.manual_seed(0)
    size = model.config.vision.image_size
    pixels = torch.randn(2, 3, size, size)
    rows = patch_rows(pixels, model.config.vision.patch_size)
    with torch.inference_mode():
        exact = _plain_clip(tower32, pixels).double()
        assert (tower32(rows).double() - exact).abs().max().item() < 1e-4
        plain_err = (_plain_clip(tower16, pixels.bfloat16()).double() - exact).abs().max().item()
        ours_err = (tower16(rows.bfloat16()).double() - exact).abs().max().item()
    assert 0 < ours_err <= 2 * plain_err, (ours_err, plain_err)


def test_attention_calls_sdpa_as_its_fused_kernels_need(monkeypatch):
    """4-D [B, heads, tokens, d] bf16 tensors with a contiguous last dim and no mask: the inputs
    the flash/cuDNN kernels take on a GPU (anything else would fall to the math backend)."""
    model = load_model(GOLDEN / "medium-videoxl")
    tower = copy.deepcopy(model.model.vision).to(torch.bfloat16)
    calls = []
    sdpa = F.scaled_dot_product_attention

    def checked(q, k, v, *args, **kwargs):
        assert not args and not kwargs, "no mask, no other option"
        for t in (q, k, v):
            assert t.dim() == 4 and t.dtype == torch.bfloat16 and t.stride(-1) == 1
        calls.append(tuple(q.shape))
        return sdpa(q, k, v)
    monkeypatch.setattr(F, "scaled_dot_product_attention", checked)
    cfg = model.config.vision
    with torch.inference_mode():
        tower(patch_rows(torch.randn(3, 3, cfg.image_size, cfg.image_size), cfg.patch_size).bfloat16())
    head_dim = cfg.hidden_size // cfg.num_heads
    assert calls == [(3, cfg.num_heads, cfg.num_patches + 1, head_dim)] * cfg.layers_to_run



@needs_ext
def test_fused_embeddings_tower_equals_the_pytorch_tower():
    """The fused ops on the CPU (their C++ kernels): one clip_embed_layer_norm per tower call in place of
    the class-token cat, the position add and pre_layrnorm; the PyTorch tower's features within
    the norms' few fp32 ulp."""
    model = load_model(GOLDEN / "medium-videoxl")
    tower = copy.deepcopy(model.model.vision)
    cfg = model.config.vision
    rows = patch_rows(torch.randn(3, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1)),
                      cfg.patch_size)
    with torch.inference_mode():
        want = tower(rows)
        with ops.using(ops.KernelPolicy(every_cpu_kernel=True)), CountOps() as counted:
            got = tower(rows)
    assert counted.ops["clip_embed_layer_norm"] == 1
    assert counted.ops["cat"] == 0
    assert got.shape == want.shape == (3, cfg.num_patches, cfg.hidden_size)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
