"""The OpenAI-compatible API through the official openai client, against the Python API."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from conftest import needs_av  # noqa: E402
from server_harness import NAME, VIDEO, LiveServer, data_url, image, png, server_model, video_message  # noqa: E402

QUESTION = "What happens in the video?"
FRAMES = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vxl_fast.server import create_app

    media = tmp_path_factory.mktemp("media")
    (media / "clip.mp4").write_bytes(VIDEO.read_bytes())
    live = LiveServer(create_app(server_model(), max_tokens=64, allowed_local_media_path=str(media)))
    live.media = media
    yield live
    live.close()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def video_memory(tiny_model):
    pytest.importorskip("av", reason="the golden video needs PyAV")
    return tiny_model.encode(str(VIDEO), num_frames=FRAMES)


def ask(client, messages, **extra):
    return client.chat.completions.create(model=NAME, messages=messages, max_tokens=16,
                                          extra_body={"num_frames": FRAMES, **extra})


def test_models_and_health(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == [NAME]
    assert models.data[0].owned_by == "vxl_fast"
    r = httpx.get(f"{server.url}/health", timeout=30)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@needs_av
def test_data_url_video_then_cache_hit_same_as_ask(server, client, tiny_model, video_memory):
    expected = tiny_model.ask(video_memory, QUESTION, max_new_tokens=16)
    misses, hits = (server.metric("vxl_memory_cache_misses_total"), server.metric("vxl_memory_cache_hits_total"))
    first = ask(client, [video_message(QUESTION)], compression_ratio=8)
    second = ask(client, [video_message(QUESTION)], compression_ratio=8)
    for r in (first, second):
        assert r.object == "chat.completion" and r.model == NAME
        assert r.choices[0].message.role == "assistant"
        assert r.choices[0].message.content == expected.text
        assert r.choices[0].finish_reason == {"eos": "stop", "stop": "stop", "length": "length"}[expected.finish_reason]
        assert r.usage.completion_tokens == len(expected.token_ids)
        assert r.usage.prompt_tokens == expected.stats["prompt_tokens"] + expected.stats["vsts"]
        stats = r.usage.vxl_fast
        for k in ("frames", "windows", "vsts", "kv_bytes"):
            assert stats[k] == expected.stats[k], k
        assert {"vision_s", "prefill_s", "decode_s", "encode_s"} <= set(stats)
    assert first.usage.vxl_fast["cache"] in ("miss", "hit")  # "hit" when an earlier test encoded it
    assert second.usage.vxl_fast["cache"] == "hit" and second.usage.vxl_fast["encode_s"] == 0.0
    assert server.metric("vxl_memory_cache_hits_total") >= hits + 1
    assert server.metric("vxl_memory_cache_misses_total") <= misses + 1


@needs_av
def test_local_file_shares_the_cache_with_the_same_bytes(server, client, tiny_model, video_memory):
    ask(client, [video_message(QUESTION)])
    for url in (f"file://{server.media / 'clip.mp4'}", str(server.media / "clip.mp4"), "clip.mp4"):
        r = ask(client, [video_message(QUESTION, url)])
        assert r.usage.vxl_fast["cache"] == "hit", url
        assert r.choices[0].message.content == tiny_model.ask(video_memory, QUESTION, max_new_tokens=16).text


@needs_av
def test_stream_pieces_join_to_the_answer(client, tiny_model, video_memory):
    expected = tiny_model.ask(video_memory, QUESTION, max_new_tokens=16)
    chunks = list(client.chat.completions.create(
        model=NAME, messages=[video_message(QUESTION)], max_tokens=16, stream=True,
        stream_options={"include_usage": True}, extra_body={"num_frames": FRAMES}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1
    assert "".join(pieces) == expected.text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length" if expected.finish_reason == "length" else "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(expected.token_ids)
    assert chunks[-1].usage.vxl_fast["frames"] == FRAMES


@needs_av
def test_stream_wire_format_ends_with_done(server):
    body = {"model": NAME, "messages": [video_message(QUESTION)], "max_tokens": 4, "stream": True,
            "num_frames": FRAMES}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert all("usage" not in json.loads(e[6:]) for e in events[:-1])  # no include_usage: no usage chunk


def test_image_request_same_as_ask(client, tiny_model):
    img = image(1)
    expected = tiny_model.ask(tiny_model.encode(images=[img]), "Describe the image.", max_new_tokens=12)
    r = client.chat.completions.create(model=NAME, max_tokens=12, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(png(img), "image/png")}},
        {"type": "text", "text": "Describe the image."}]}])
    assert r.choices[0].message.content == expected.text
    assert r.usage.vxl_fast["modality"] == "image" and r.usage.vxl_fast["image_tiles"] == expected.stats["image_tiles"]


def test_multi_image_request_same_as_ask(client, tiny_model):
    imgs = [image(2), image(3, 320, 240)]
    content = [{"type": "image_url", "image_url": {"url": data_url(png(a), "image/png")}} for a in imgs]
    r = client.chat.completions.create(model=NAME, max_tokens=12, messages=[{"role": "user", "content": [
        *content, {"type": "text", "text": "What differs?"}]}])
    expected = tiny_model.ask(tiny_model.encode(images=imgs), "What differs?", max_new_tokens=12)
    assert r.choices[0].message.content == expected.text


@needs_av
def test_multi_turn_with_system_prompt_same_as_chat(client, tiny_model):
    system = "You describe videos briefly."
    chat = tiny_model.chat(tiny_model.encode(str(VIDEO), num_frames=FRAMES, system=system))
    a1 = chat.ask("What is shown?", max_new_tokens=8).text
    a2 = chat.ask("And then?", max_new_tokens=8).text
    r = client.chat.completions.create(model=NAME, max_tokens=8, extra_body={"num_frames": FRAMES}, messages=[
        {"role": "system", "content": system}, video_message("What is shown?"),
        {"role": "assistant", "content": a1}, {"role": "user", "content": "And then?"}])
    assert r.choices[0].message.content == a2


@needs_av
def test_seeded_sampling_repeats_and_stop_cuts(client, tiny_model, video_memory):
    kw = dict(model=NAME, messages=[video_message(QUESTION)], max_tokens=16, temperature=0.8, top_p=0.9, seed=7,
              extra_body={"num_frames": FRAMES, "top_k": 50})
    a, b = (client.chat.completions.create(**kw).choices[0].message.content for _ in range(2))
    expected = tiny_model.ask(video_memory, QUESTION, max_new_tokens=16, do_sample=True, temperature=0.8,
                              top_p=0.9, top_k=50, seed=7)
    assert a == b == expected.text
    stop = tiny_model.ask(video_memory, QUESTION, max_new_tokens=16).text.split()[1]  # a word of the greedy answer
    r = client.chat.completions.create(model=NAME, messages=[video_message(QUESTION)], max_tokens=16, stop=[stop],
                                       extra_body={"num_frames": FRAMES})
    assert r.choices[0].message.content == tiny_model.ask(video_memory, QUESTION, max_new_tokens=16, stop=[stop]).text
    assert r.choices[0].finish_reason == "stop"


def test_metrics_exposition(server, client):
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    for name in ("vxl_requests_total", "vxl_prompt_tokens_total", "vxl_completion_tokens_total",
                 "vxl_memory_cache_hits_total", "vxl_memory_cache_misses_total", "vxl_queue_length",
                 "vxl_encode_seconds_total", "vxl_decode_seconds_total"):
        assert f"# TYPE {name} " in text, name
    assert server.metric("vxl_queue_length") == 0
