"""Concurrency, the bounded queue, disconnects and shutdown. Every loop is bounded in count and
time; only 127.0.0.1 is contacted."""

from __future__ import annotations

import contextlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from conftest import needs_av  # noqa: E402
from server_harness import NAME, VIDEO, LiveServer, server_model, video_message, wait_until  # noqa: E402

pytestmark = needs_av
QUESTIONS = ("What happens?", "What colour is the background?", "Is there any text?")
LONG = 20000  # tokens a request asks for when it must hold the device until it is cancelled


def make_server(**options) -> LiveServer:
    from vxl_fast.server import create_app

    graceful = options.pop("graceful_timeout", 30.0)
    return LiveServer(create_app(server_model(), **options), graceful_timeout=graceful)


def body(question: str = QUESTIONS[0], frames: int = 4, max_tokens: int = 8, **extra) -> dict:
    return {"model": NAME, "messages": [video_message(question)], "max_tokens": max_tokens,
            "num_frames": frames, **extra}


def test_eight_clients_three_requests_each(tiny_model):
    frames = (8, 4)
    memories = {f: tiny_model.encode(str(VIDEO), num_frames=f) for f in frames}
    expected = {(f, q): tiny_model.ask(memories[f], q, max_new_tokens=12).text for f in frames for q in QUESTIONS}
    live = make_server(max_queue=32, max_tokens=64)
    try:
        def client(i: int):
            c = live.client()
            out = []
            for j in range(3):
                f, q = frames[(i + j) % 2], QUESTIONS[(i + j) % 3]
                r = c.chat.completions.create(model=NAME, messages=[video_message(q)], max_tokens=12,
                                              extra_body={"num_frames": f})
                out.append(((f, q), r.choices[0].message.content))
            return out

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client, i) for i in range(8)]
            done, pending = wait(futures, timeout=600)
        assert not pending, "clients still waiting after 600 s"
        answers = [a for f in futures for a in f.result()]
        assert len(answers) == 24
        for key, text in answers:
            assert text == expected[key], key
        assert live.metric("vxl_requests_total", status="200") == 24
        # each of the two videos was decoded and encoded once; every other request was a hit
        assert live.metric("vxl_encodes_total") == 2
        assert live.metric("vxl_memory_cache_misses_total") == 2
        assert live.metric("vxl_memory_cache_hits_total") == 22
        assert live.metric("vxl_queue_length") == 0
    finally:
        live.close()


def test_queue_overflow_429_and_disconnects_free_their_slots(tiny_model):
    expected = tiny_model.ask(tiny_model.encode(str(VIDEO), num_frames=4), QUESTIONS[1], max_new_tokens=8).text
    live = make_server(max_queue=1, max_tokens=LONG)
    worker = live.service.worker
    try:
        with httpx.Client(timeout=120) as http:
            # A holds the device: a long streamed answer
            with http.stream("POST", f"{live.url}/v1/chat/completions",
                             json=body(max_tokens=LONG, ignore_eos=True, stream=True)) as a:
                assert a.status_code == 200
                lines = a.iter_lines()  # NOTE: kept: a dropped line iterator closes the connection
                first = list(itertools.islice(lines, 50))
                assert any('"content":"' in line and '""' not in line for line in first), "no text piece in A's start"
                # E's video waits behind A to be encoded, then E's client gives up: its slot is
                # freed and the encode, which nobody else waits for, never runs
                with pytest.raises(httpx.ReadTimeout):
                    http.post(f"{live.url}/v1/chat/completions", json=body(frames=6),
                              timeout=httpx.Timeout(120, read=1.0))
                wait_until(lambda: worker.admitted == 1, 60, "the abandoned request to leave the queue")
                # B waits behind A
                with ThreadPoolExecutor(1) as pool:
                    b = pool.submit(lambda: live.client().chat.completions.create(
                        model=NAME, messages=[video_message(QUESTIONS[1])], max_tokens=8,
                        extra_body={"num_frames": 4}))
                    wait_until(lambda: worker.admitted == 2, 60, "B to be queued")
                    # C finds the queue full
                    with pytest.raises(openai.RateLimitError) as e:
                        live.client().chat.completions.create(model=NAME, messages=[video_message("?")],
                                                              extra_body={"num_frames": 4})
                    assert e.value.status_code == 429
                    assert "--max-queue 1" in e.value.message
                    assert e.value.body["type"] == "rate_limit_error"
                    # A's client goes away mid-stream
                    a.close()
                    assert b.result(timeout=300).choices[0].message.content == expected
        live.wait_idle()
        assert live.metric("vxl_requests_cancelled_total") == 2  # A (running) and E (queued)
        assert live.metric("vxl_encodes_total") == 1  # A's video (B's too); E's never
        assert live.metric("vxl_requests_total", status="429") == 1
        assert live.metric("vxl_completion_tokens_total") == 8  # only B's answer was complete
        r = live.client().chat.completions.create(model=NAME, messages=[video_message(QUESTIONS[1])],
                                                  max_tokens=8, extra_body={"num_frames": 4})
        assert r.choices[0].message.content == expected
    finally:
        live.close()


def test_a_disconnect_stops_a_running_encode():
    """The only client waiting for a long encode goes away: the encode stops at its next window."""
    live = make_server(max_queue=4, max_tokens=64, max_frames=2000)
    try:
        with httpx.Client(timeout=120) as http:
            with pytest.raises(httpx.ReadTimeout):  # 480 frames: 48 windows, many seconds on a CPU
                http.post(f"{live.url}/v1/chat/completions", json=body(frames=480),
                          timeout=httpx.Timeout(120, read=1.0))
        wait_until(lambda: live.metric("vxl_encodes_cancelled_total") == 1, 120, "the encode to stop")
        live.wait_idle()
        assert live.metric("vxl_encodes_total") == 0
        assert live.metric("vxl_memory_cache_entries", tier="device") == 0
        r = live.client().chat.completions.create(model=NAME, messages=[video_message(QUESTIONS[0])],
                                                  max_tokens=4, extra_body={"num_frames": 4})
        assert r.choices[0].finish_reason in ("stop", "length")  # the device is free again
    finally:
        live.close()


def test_shutdown_finishes_in_flight_requests():
    live = make_server(max_tokens=400)
    result = {}

    def request():
        result["r"] = live.client().chat.completions.create(
            model=NAME, messages=[video_message(QUESTIONS[0])], max_tokens=300,
            extra_body={"num_frames": 4, "ignore_eos": True})

    t = threading.Thread(target=request)
    t.start()
    try:
        wait_until(lambda: live.service.worker.running == 1 and live.metric("vxl_encodes_total") == 1, 120,
                   "the request to reach the device")
    finally:
        live.close()
        t.join(timeout=300)
    assert not t.is_alive() and not live.thread.is_alive()
    assert result["r"].usage.completion_tokens == 300 and result["r"].choices[0].finish_reason == "length"
    assert live.service.worker.closed


def test_shutdown_past_the_grace_period_cancels_a_stream():
    live = make_server(max_tokens=LONG, graceful_timeout=0.5)
    with httpx.Client(timeout=120) as http, http.stream(
            "POST", f"{live.url}/v1/chat/completions", json=body(max_tokens=LONG, ignore_eos=True, stream=True)) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        live.close()
        with contextlib.suppress(httpx.HTTPError):  # the server drops the connection
            for _ in lines:
                pass
    assert not live.thread.is_alive()
    assert live.service.worker.closed and live.service.worker.running == 0
    assert live.service.metrics.value("vxl_requests_cancelled_total") == 1
    assert live.service.metrics.value("vxl_completion_tokens_total") == 0
