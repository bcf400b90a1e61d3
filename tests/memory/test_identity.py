"""A memory file records the identity it was made for; a reader expecting one refuses another."""

from __future__ import annotations

import pytest
import torch

from vxl_fast import VideoMemory
from vxl_fast.errors import MemoryFileError
from vxl_fast.memory.files import identity_key

IDENTITY = {"media": [["video", "ab" * 32]], "options": {"num_frames": 4, "compression_ratio": 16},
            "system": None, "checkpoint": "c" * 64, "dtype": "torch.float32"}


@pytest.fixture(scope="module")
def memory(tiny_model):
    frames = torch.randint(0, 256, (9, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return tiny_model.encode(frames=frames, compression_ratio=16)


def test_identity_key_ignores_key_order():
    reordered = dict(reversed(list(IDENTITY.items())))
    assert identity_key(reordered) == identity_key(IDENTITY)
    assert identity_key({**IDENTITY, "system": "Be brief."}) != identity_key(IDENTITY)


def test_a_file_records_its_identity(tiny_model, memory, tmp_path):
    memory.state.identity = IDENTITY
    try:
        path = memory.save(tmp_path / "clip.vxl")
    finally:
        memory.state.identity = None
    # a user's own load needs no identity; the one recorded comes back with the memory
    assert VideoMemory.load(path, tiny_model).identity == IDENTITY
    assert VideoMemory.load(path, tiny_model, identity=dict(reversed(list(IDENTITY.items())))).kv_slots == \
        memory.kv_slots
    other = {**IDENTITY, "media": [["video", "cd" * 32]]}
    with pytest.raises(MemoryFileError, match="was made for another video or other options"):
        VideoMemory.load(path, tiny_model, identity=other)


def test_a_file_without_identity_loads_but_answers_no_key(tiny_model, memory, tmp_path):
    path = memory.save(tmp_path / "clip.vxl")
    loaded = VideoMemory.load(path, tiny_model)
    assert loaded.identity is None and loaded.kv_slots == memory.kv_slots
    with pytest.raises(MemoryFileError, match="was made for another video or other options"):
        VideoMemory.load(path, tiny_model, identity=IDENTITY)
