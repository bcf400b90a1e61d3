"""``vxl-fast serve --ray``: the server on Ray Serve with two CPU replicas on a local cluster
bound to 127.0.0.1, through the official openai client."""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from conftest import load_model
from ray_harness import (CHECKPOINT, VIDEO, connections, descendants, is_loopback, listening, local_cluster,
                         processes, ray_or_skip)

ray_or_skip()
pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from vxl_fast.distributed.serve import REPLICA_HEADER, build, video_key  # noqa: E402
from vxl_fast.server import create_app  # noqa: E402,F401  (a broken server fails here, not in the replicas)
from vxl_fast.server.options import ServeOptions  # noqa: E402

NAME = "tiny"
FRAMES = 8
QUESTIONS = ["What happens in the video?", "What color is it?", "Is there text?"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from ray import serve

    from vxl_fast.testing.tiny import write_sample_video

    media = tmp_path_factory.mktemp("media")
    shutil.copy(VIDEO, media / "a.mp4")
    write_sample_video(media / "b.mp4", frames=24)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with local_cluster(num_cpus=2):
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = ServeOptions(served_model_name=NAME, allowed_local_media_path=str(media), max_tokens=32)
        serve.run(build(CHECKPOINT, options, replicas=2, dtype="float32"), name="vxl_fast", route_prefix="/")
        try:
            yield f"http://127.0.0.1:{port}", media
        finally:
            serve.shutdown()


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key="unused", max_retries=0, timeout=120)


def _message(media, name: str, question: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": f"file://{media / name}"}},
                                         {"type": "text", "text": question}]}]


def test_two_replicas_answer_and_keep_each_video_on_one(served, client):
    """Each video's questions go to one replica (consistent hash of the video): its first is
    encoded there, the others are hits of that replica's memory cache; the answers are those of
    VideoXL in one process."""
    from ray import serve

    url, media = served
    status = serve.status().applications["vxl_fast"].deployments["VideoXL"]
    assert status.replica_states.get("RUNNING") == 2
    model = load_model(CHECKPOINT)
    for name in ("a.mp4", "b.mp4"):
        memory = model.encode(str(media / name), num_frames=FRAMES)
        replicas, tiers = set(), []
        for q in QUESTIONS:
            raw = client.chat.completions.with_raw_response.create(
                model=NAME, messages=_message(media, name, q), max_tokens=16, extra_body={"num_frames": FRAMES})
            r = raw.parse()
            replicas.add(raw.headers[REPLICA_HEADER])
            tiers.append(r.usage.vxl_fast["cache"])
            assert r.choices[0].message.content == model.ask(memory, q, max_new_tokens=16).text
        assert len(replicas) == 1, name
        assert tiers == ["miss", "hit", "hit"], name


def test_stream_and_models_through_ray(served, client):
    url, media = served
    assert [m.id for m in client.models.list().data] == [NAME]
    pieces = client.chat.completions.create(model=NAME, messages=_message(media, "a.mp4", QUESTIONS[0]),
                                            max_tokens=16, stream=True, extra_body={"num_frames": FRAMES})
    text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    whole = client.chat.completions.create(model=NAME, messages=_message(media, "a.mp4", QUESTIONS[0]),
                                           max_tokens=16, extra_body={"num_frames": FRAMES})
    assert text == whole.choices[0].message.content and text
    bad = httpx.post(f"{url}/v1/chat/completions", json={"model": NAME, "messages": "nope"}, timeout=60)
    assert bad.status_code == 400 and "error" in bad.json()


def test_serve_stays_on_loopback(served, client):
    """Every connection is between loopback addresses, and everything listens on 127.0.0.1
    except what Ray Serve hard-codes: each replica's inter-deployment gRPC server binds
    ``[::]:0`` (``ray/serve/_private/replica.py``, Ray 2.60), one per replica process."""
    if not shutil.which("ss"):
        pytest.skip("needs ss")
    url, media = served
    client.chat.completions.create(model=NAME, messages=_message(media, "b.mp4", QUESTIONS[0]), max_tokens=4,
                                   extra_body={"num_frames": FRAMES})
    pids = descendants()
    sockets = listening(pids)
    assert any(addr == f"127.0.0.1:{url.rsplit(':', 1)[1]}" for _, addr in sockets), "the HTTP proxy"
    exposed = [name for name, addr in sockets if not is_loopback(addr)]
    replicas = processes("ray::ServeReplica", pids)
    assert len(replicas) == 3 and set(exposed) <= {"ray::ServeRepli"} and len(exposed) <= len(replicas), exposed
    peers = [c for c in connections(pids) if not (is_loopback(c[1]) and is_loopback(c[2]))]
    assert peers == []


def test_video_key():
    def body(*urls):
        parts = [{"type": "video_url", "video_url": {"url": u}} for u in urls]
        return json.dumps({"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "q"}]}]}).encode()

    assert video_key(body("file:///a.mp4")) == video_key(body("file:///a.mp4"))
    assert video_key(body("file:///a.mp4")) != video_key(body("file:///b.mp4"))
    assert video_key(b'{"messages": [{"role": "user", "content": "no video"}]}') is None
    assert video_key(b"not json") is None and video_key(b"[1]") is None
