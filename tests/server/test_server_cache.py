"""The memory cache: LRU in bytes on the device, spilling to files, reloaded for the same answer;
and through a server, a memory evicted to the folder comes back as a "disk" hit."""

from __future__ import annotations

import pytest

from server_harness import NAME, VIDEO, image, video_message

from vxl_fast.server.cache import MemoryCache


@pytest.fixture(scope="module")
def memories(tiny_model):
    return [tiny_model.encode(images=[image(seed)]) for seed in range(3)]


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
    cache = MemoryCache(size, tmp_path)
    cache.put("a", memories[0])
    cache.put("b", memories[1])
    assert cache.get("a") is None and cache.on_disk("a") and cache.disk_entries == 1
    assert (tmp_path / "a.vxl").is_file() and cache.disk_nbytes == (tmp_path / "a.vxl").stat().st_size
    back = cache.load("a", tiny_model)
    assert back is not None and cache.get("a") is back
    q = dict(prompt="Describe the image.", max_new_tokens=8)
    assert tiny_model.ask(back, **q).token_ids == tiny_model.ask(memories[0], **q).token_ids
    # another run of the server finds the files again
    again = MemoryCache(size, tmp_path)
    assert again.on_disk("a") and again.on_disk("b")


def test_disk_budget_drops_the_oldest_files(memories, tmp_path):
    cache = MemoryCache(0, tmp_path, max_disk_bytes=1)  # nothing fits: each spilled file is dropped
    cache.put("a", memories[0])
    assert cache.get("a") is None and not cache.on_disk("a") and not list(tmp_path.glob("*.vxl"))
    # files differ by a few bytes of metadata: the budget is exactly the two newest files
    sizes = []
    for i, m in enumerate(memories):
        sizes.append(m.save(tmp_path / f"probe{i}.vxl").stat().st_size)
        (tmp_path / f"probe{i}.vxl").unlink()
    cache = MemoryCache(0, tmp_path, max_disk_bytes=sizes[1] + sizes[2])
    for key, m in zip("abc", memories, strict=True):
        cache.put(key, m)
    assert [cache.on_disk(k) for k in "abc"] == [False, True, True]


def test_a_file_of_another_model_is_a_miss(tiny_model, memories, tmp_path):
    (tmp_path / "k.vxl").write_bytes(b"not a memory")
    cache = MemoryCache(2 ** 30, tmp_path)
    assert cache.on_disk("k")
    assert cache.load("k", tiny_model) is None and not cache.on_disk("k") and not (tmp_path / "k.vxl").exists()


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
