"""Several images in one request: each image a frame of one visual span (the golden cases run in
tests/engine/test_golden.py and, through encode + ask, in test_video_memory.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN, Case

CASE = GOLDEN / "multi-image-cases" / "mimg3_r4_odd.json"


@pytest.fixture(scope="module")
def case():
    return Case(CASE)


def test_mixed_input_types_in_one_list(tiny_model, case, tmp_path):
    """A path, a PIL image and an array in one list give the arrays' answer."""
    first, second, third = case.images()
    Image.fromarray(first).save(tmp_path / "first.png")
    images = [tmp_path / "first.png", Image.fromarray(second), torch.from_numpy(third)]
    out = tiny_model.generate(images=images, prompt=case.meta["question"], compression_ratio=4, max_new_tokens=16)
    assert out.token_ids == case.meta["output_ids"]
    assert out.stats["images"] == 3 and out.stats["frames"] == 0 and out.stats["visual_tokens"] == 432


def test_grey_and_rgba_images_become_rgb(tiny_model, case):
    rgb = case.images()[1]
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    a = tiny_model.visual_tokens(images=[Image.fromarray(grey), Image.fromarray(rgb).convert("RGBA")])
    b = tiny_model.visual_tokens(images=[np.stack([grey] * 3, -1), rgb])
    assert torch.equal(a, b)


def test_append_images_to_a_live_memory(tiny_model, case):
    images = case.images()
    whole = tiny_model.encode(images=images, compression_ratio=4)
    live = tiny_model.encode(compression_ratio=4)
    live.append(images[:1]).append(images[1:]).flush()
    assert live.windows == whole.windows and live.frames == 3
    assert torch.equal(live.cache.k[:, :, :live.kv_slots], whole.cache.k[:, :, :whole.kv_slots])


# NOTE: PNGs decode to read-only arrays, which torch warns about (once per process) unless copied
@pytest.mark.filterwarnings("error:The given NumPy array is not writable")
def test_folder_of_differently_sized_images_as_video(tiny_model, case, tmp_path):
    for i, image in enumerate(case.images()):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    out = tiny_model.generate(video=tmp_path, prompt=case.meta["question"], compression_ratio=4, max_new_tokens=16)
    assert out.token_ids == case.meta["output_ids"]


@pytest.mark.parametrize("images, exc, match", [
    ([], ValueError, "images= is an empty list: zero images given"),
    ([np.zeros((8, 8, 3), np.uint8), "not-a-file.png"], FileNotFoundError, "image file not found: not-a-file.png"),
    ([np.zeros((8, 8, 3), np.uint8), 42], TypeError, r"images\[1\]: unsupported image int"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((0, 0, 3), np.uint8)], ValueError, r"images\[1\]: .*empty size \[0, 0\]"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)], TypeError, "uint8"),
])
def test_bad_image_lists(tiny_model, images, exc, match):
    with pytest.raises(exc, match=match):
        tiny_model.generate(images=images, prompt="q", max_new_tokens=2)


def test_cli_several_images(case, tmp_path):
    paths = []
    for i, image in enumerate(case.images()):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    r = subprocess.run([sys.executable, "-m", "vxl_fast", "ask", *map(str, paths), case.meta["question"],
                        "--model", str(GOLDEN / "tiny-videoxl"), "--device", "cpu", "--dtype", "float32", "--ratio", "4",
                        "--max-new-tokens", "16", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["token_ids"] == case.meta["output_ids"] and out["stats"]["images"] == 3
