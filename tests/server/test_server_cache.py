"""The memory cache: LRU in bytes on the device, spilling to files, reloaded for the same answer;
only the files it made, only for the identity asked; a folder it cannot write turns the disk tier
off. Through a server, a memory evicted to the folder comes back as a "disk" hit."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil

import pytest

from server_harness import NAME, VIDEO, image, video_message

from vxl_fast.server.cache import MemoryCache


IDS = [{"media": [["image", str(seed)]], "options": {"compression_ratio": 16}, "system": None} for seed in range(3)]
KEYS = [MemoryCache.key(i) for i in IDS]


@pytest.fixture(scope="module")
def memories(tiny_model):
    out = [tiny_model.encode(images=[image(seed)]) for seed in range(3)]
    for m, identity in zip(out, IDS, strict=True):
        m.state.identity = identity
    return out


def path(folder, key):
    return folder / f"vxl_fast-{key}.vxl"


def test_lru_in_bytes_without_a_folder(memories):
    size = memories[0].cache.nbytes
    assert all(m.cache.nbytes == size for m in memories)
    cache = MemoryCache(2 * size)
    cache.put("a", memories[0])
    cache.put("b", memories[1])
    assert cache.get("a") is memories[0]  # a is now the most recently used
    cache.put("c", memories[2])
    assert cache.get("b") is None and cache.get("a") is memories[0] and cache.get("c") is memories[2]
    assert cache.nbytes == 2 * size and len(cache) == 2 and cache.evictions == 1
    assert not cache.on_disk("b")


def test_spill_to_folder_and_reload(tiny_model, memories, tmp_path):
    size = memories[0].cache.nbytes
    a, b = KEYS[:2]
    cache = MemoryCache(size, tmp_path)
    cache.put(a, memories[0])
    cache.put(b, memories[1])
    assert cache.get(a) is None and cache.on_disk(a) and cache.disk_entries == 1
    assert path(tmp_path, a).is_file() and cache.disk_nbytes == path(tmp_path, a).stat().st_size
    back = cache.load(a, tiny_model, IDS[0])
    assert back is not None and cache.get(a) is back and back.identity == IDS[0]
    q = dict(prompt="Describe the image.", max_new_tokens=8)
    assert tiny_model.ask(back, **q).token_ids == tiny_model.ask(memories[0], **q).token_ids
    # another run of the server finds the files again, through its manifest
    again = MemoryCache(size, tmp_path)
    assert again.on_disk(a) and again.on_disk(b) and again.strays == [] and again.health() == {"status": "ok"}


def test_disk_budget_drops_the_oldest_files(memories, tmp_path):
    from vxl_fast.server.options import ServeOptions

    assert MemoryCache(0).max_disk_bytes == ServeOptions().memory_cache_disk_bytes == 20 * 2 ** 30  # the default
    with pytest.raises(ValueError, match="memory_cache_disk_bytes must be >= 0, got -1"):
        ServeOptions(memory_cache_disk_bytes=-1)
    with pytest.raises(ValueError, match="the memory cache folder size must be >= 0 bytes, got -1"):
        MemoryCache(0, tmp_path, max_disk_bytes=-1)
    cache = MemoryCache(0, tmp_path, max_disk_bytes=1)  # nothing fits: each spilled file is dropped
    cache.put(KEYS[0], memories[0])
    assert cache.get(KEYS[0]) is None and not cache.on_disk(KEYS[0]) and not list(tmp_path.glob("*.vxl"))
    # files differ by a few bytes of metadata: the budget is exactly the two newest files
    sizes = []
    for i, m in enumerate(memories):
        sizes.append(m.save(tmp_path / f"probe{i}.vxl").stat().st_size)
        (tmp_path / f"probe{i}.vxl").unlink()
    cache = MemoryCache(0, tmp_path, max_disk_bytes=sizes[1] + sizes[2])
    for key, m in zip(KEYS, memories, strict=True):
        cache.put(key, m)
    assert [cache.on_disk(k) for k in KEYS] == [False, True, True]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path(tmp_path, k).name for k in KEYS[1:]] + ["vxl_fast-cache.json"])
    assert cache.disk_nbytes == sizes[1] + sizes[2]


def test_a_corrupt_file_is_a_miss(tiny_model, memories, tmp_path):
    cache = MemoryCache(0, tmp_path)
    cache.put(KEYS[0], memories[0])
    path(tmp_path, KEYS[0]).write_bytes(b"not a memory")
    with pytest.warns(RuntimeWarning, match=f"vxl_fast-{KEYS[0]}.vxl not used .*truncated or corrupt"):
        assert cache.load(KEYS[0], tiny_model, IDS[0]) is None
    assert not cache.on_disk(KEYS[0]) and not path(tmp_path, KEYS[0]).exists() and cache.rejected == 1


def test_a_file_copied_under_another_key_is_a_miss(tiny_model, memories, tmp_path):
    """A valid memory file of one image placed where another image's memory belongs."""
    cache = MemoryCache(0, tmp_path)
    cache.put(KEYS[0], memories[0])
    cache.put(KEYS[1], memories[1])
    shutil.copyfile(path(tmp_path, KEYS[0]), path(tmp_path, KEYS[1]))
    again = MemoryCache(0, tmp_path)  # sizes are read from the files, not trusted from the manifest
    with pytest.warns(RuntimeWarning, match="made for another video or other options"):
        assert again.load(KEYS[1], tiny_model, IDS[1]) is None
    assert not again.on_disk(KEYS[1]) and again.rejected == 1
    assert again.load(KEYS[0], tiny_model, IDS[0]).identity == IDS[0]


def test_stray_files_and_dangling_links_are_left_alone(memories, tmp_path):
    mine = memories[0].save(tmp_path / "mine.vxl")  # a user's own memory file
    lookalike = path(tmp_path, "0" * 64)
    lookalike.write_bytes(b"the cache's name, but not in its manifest")
    (tmp_path / "dangling.vxl").symlink_to(tmp_path / "gone.vxl")
    with pytest.warns(RuntimeWarning, match="3 entries in .* were not made by it and are left alone"):
        cache = MemoryCache(0, tmp_path, max_disk_bytes=1)
    assert sorted(cache.strays) == sorted(["mine.vxl", lookalike.name, "dangling.vxl (dangling link)"])
    assert cache.disk_entries == 0 and cache.health() == {"status": "ok"}
    for key, m in zip(KEYS, memories, strict=True):  # every spill goes beyond the budget and is deleted
        cache.put(key, m)
    assert cache.disk_entries == 0 and mine.is_file() and lookalike.is_file()
    assert (tmp_path / "dangling.vxl").is_symlink()
    # a stray under the cache's own name is not overwritten either
    with pytest.warns(RuntimeWarning, match="left alone"):
        cache = MemoryCache(0, tmp_path)
    cache.put("0" * 64, memories[0])
    assert not cache.on_disk("0" * 64) and lookalike.read_bytes().startswith(b"the cache's name")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_an_unwritable_folder_turns_the_disk_tier_off(memories, tmp_path, monkeypatch, fault):
    cache = faulty_cache(tmp_path, monkeypatch, fault)
    with pytest.warns(RuntimeWarning, match="cannot be written") if fault == "full" else contextlib.nullcontext():
        cache.put(KEYS[0], memories[0])  # no exception: the memory is simply not spilled
    assert not cache.on_disk(KEYS[0]) and not [p for p in tmp_path.iterdir() if p.name != "vxl_fast-cache.json"]
    health = cache.health()
    assert health["status"] == "degraded" and str(tmp_path) not in health["reason"]
    want = "it is full" if fault == "full" else "it is read-only or not writable"
    assert health["reason"] == (f"the memory cache folder cannot be written ({want}); "
                                "memories are kept on the device only")


def test_an_unreadable_manifest_leaves_the_files_alone(memories, tmp_path):
    cache = MemoryCache(0, tmp_path)
    cache.put(KEYS[0], memories[0])
    (tmp_path / "vxl_fast-cache.json").write_text("{")
    with pytest.warns(RuntimeWarning) as seen:
        again = MemoryCache(0, tmp_path, max_disk_bytes=1)
    messages = [str(w.message) for w in seen]
    assert len(messages) == 2 and "the manifest vxl_fast-cache.json is unreadable (JSONDecodeError)" in messages[0]
    assert f"1 entries in {tmp_path} were not made by it and are left alone" in messages[1]
    assert not again.on_disk(KEYS[0]) and again.strays == [path(tmp_path, KEYS[0]).name]
    again.put(KEYS[1], memories[1])  # beyond the budget: dropped, and the unlisted file stays
    assert path(tmp_path, KEYS[0]).is_file() and not path(tmp_path, KEYS[1]).exists()


def test_a_folder_that_cannot_be_made_turns_the_disk_tier_off(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="cannot be opened"):
        cache = MemoryCache(0, tmp_path / "file" / "cache")
    health = cache.health()
    assert health["status"] == "degraded" and str(tmp_path) not in health["reason"]
    assert health["reason"].startswith("the memory cache folder cannot be opened (Not a directory)")


def faulty_cache(folder, monkeypatch, fault: str) -> MemoryCache:
    """A cache whose folder is full (every write fails with ENOSPC) or read-only (as a read-only
    mount looks, even to root: not writable, and a write fails with EROFS)."""
    from vxl_fast.memory import files

    if fault == "full":
        def write(tensors, filename, metadata=None):
            with open(filename, "wb") as f:
                f.write(b"x" * 10)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        monkeypatch.setattr(files, "save_file", write)
        return MemoryCache(0, folder)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if mode & os.W_OK and str(p).startswith(str(folder)) else real(p, mode, **kw)))
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        return MemoryCache(0, folder)


def test_server_disk_hit_gives_the_same_answer(tiny_model, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("openai")
    pytest.importorskip("av", reason="the golden video needs PyAV")
    from server_harness import LiveServer, server_model

    from vxl_fast.server import create_app

    expected = {f: tiny_model.ask(tiny_model.encode(str(VIDEO), num_frames=f), "What happens?", max_new_tokens=8).text
                for f in (4, 6)}
    # room for one memory on the device: the second video's memory pushes the first to the folder
    one = tiny_model.encode(str(VIDEO), num_frames=4).cache.nbytes
    live = LiveServer(create_app(server_model(), max_tokens=16, memory_cache_bytes=one, memory_cache_dir=str(tmp_path)))
    try:
        client = live.client()
        ask = lambda f: client.chat.completions.create(  # noqa: E731
            model=NAME, messages=[video_message("What happens?")], max_tokens=8, extra_body={"num_frames": f})
        tiers = []
        for f in (4, 6, 4):
            r = ask(f)
            assert r.choices[0].message.content == expected[f]
            tiers.append(r.usage.vxl_fast["cache"])
        assert tiers == ["miss", "miss", "disk"]
        assert live.metric("vxl_memory_cache_disk_hits_total") == 1
        assert live.metric("vxl_memory_cache_evictions_total") >= 1
        assert live.metric("vxl_memory_cache_entries", tier="disk") >= 1
    finally:
        live.close()
