"""``vxl-fast batch`` on a local two-CPU Ray cluster bound to 127.0.0.1: the answers of one
process, a bad video isolated, a killed worker's request retried, an interrupted run resumed."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import threading
import time

import pytest

from conftest import load_model
from ray_harness import (CHECKPOINT, VIDEO, connections, descendants, frame_folder, is_loopback, listening,
                         local_cluster, processes, ray_or_skip, write_jsonl)

ray_or_skip()

from vxl_fast.distributed import read_records, run_batch  # noqa: E402
from vxl_fast.distributed.cli import add_parser  # noqa: E402

QUESTIONS = ["What happens in the video?", "What color is the square?", "Where does the square go?"]
OPTIONS = {"max_new_tokens": 12}
DEADLINE_S = 240  # any one run; the tiny model answers these in seconds


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """4 videos (the golden MP4 and 3 PNG frame folders) x 3 questions = 12 requests, one line
    asking 2 questions, one sampled answer, and one broken video: 13 lines."""
    root = tmp_path_factory.mktemp("batch")
    videos = [(str(VIDEO), {"num_frames": 24})] + [
        (str(frame_folder(root / f"clip{i}", frames=12 + 4 * i, seed=i)), {}) for i in range(3)]
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    rows = []
    for v, (path, encode) in enumerate(videos):
        for q, question in enumerate(QUESTIONS):
            rows.append({"id": f"v{v}-q{q}", "video": os.path.relpath(path, root), **encode,
                         "question": question, **OPTIONS})
    rows[1].pop("question")
    rows[1]["questions"] = [QUESTIONS[1], {"prompt": "And then?", "max_new_tokens": 5}]
    rows[5].update(do_sample=True, temperature=0.8, seed=3)
    rows.insert(7, {"id": "broken", "video": "broken.mp4", "num_frames": 8, "question": "Anything?"})
    return write_jsonl(root / "requests.jsonl", rows), rows


@pytest.fixture(scope="module")
def expected(batch):
    """Each request answered by VideoXL in this process: id → [(text, token_ids)]."""
    path, rows = batch
    model = load_model(CHECKPOINT)
    out, memories = {}, {}
    for row in rows:
        if row["id"] == "broken":
            continue
        video = str(path.parent / row["video"])
        key = (video, row.get("num_frames"))
        if key not in memories:
            memories[key] = model.encode(video, num_frames=row.get("num_frames"))
        shared = {k: v for k, v in row.items() if k in ("max_new_tokens", "do_sample", "temperature", "seed")}
        questions = row.get("questions") or [row["question"]]
        answers = []
        for q in questions:
            prompt, opts = (q["prompt"], {**shared, **{k: v for k, v in q.items() if k != "prompt"}}) \
                if isinstance(q, dict) else (q, shared)
            o = model.ask(memories[key], prompt, **opts)
            answers.append((o.text, o.token_ids))
        out[row["id"]] = answers
    return out


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check(records: list[dict], expected: dict) -> None:
    """Exactly one record per request; the answers of one process; one error for the bad video."""
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted([*expected, "broken"]), "every request exactly once"
    by_id = {r["id"]: r for r in records}
    for rid, answers in expected.items():
        r = by_id[rid]
        assert r["status"] == "ok", r
        assert [(a["text"], a["token_ids"]) for a in r["answers"]] == answers, rid
    bad = by_id["broken"]
    assert bad["status"] == "error" and bad["error"]["type"] and "broken.mp4" in json.dumps(bad["source"])
    assert "answers" not in bad


def test_batch_gives_the_answers_of_one_process(cluster, batch, expected, tmp_path):
    """The answers of VideoXL in one process, on two workers. While they run, every TCP socket
    the cluster's processes listen on (GCS, raylet, agents, the driver's and each worker's gRPC
    server) is bound to the loopback address, and every connection is between loopback
    addresses (``ss -tnp``)."""
    requests, _ = batch
    out = tmp_path / "answers.jsonl"
    seen, sockets, peers = [], [], []

    def record(r):
        seen.append(r)
        if len(seen) == 1 and shutil.which("ss"):
            pids = descendants()
            sockets.extend(listening(pids))
            peers.extend(c for c in connections(pids) if not (is_loopback(c[1]) and is_loopback(c[2])))

    summary = run_batch(requests, out, CHECKPOINT, workers=2, progress=False, on_record=record)
    records = _lines(out)
    _check(records, expected)
    assert records == seen, "on_record sees each record as it is written"
    assert (summary.answered, summary.failed, summary.skipped, summary.workers) == (12, 1, 0, 2)
    ok = [r for r in records if r["status"] == "ok"]
    assert {r["worker"]["name"] for r in ok} == {"worker-0", "worker-1"}
    assert {r["worker"]["node"] for r in ok} == {"127.0.0.1"}
    # one encoding per video: the first request of each video encodes, the other two reuse it
    assert sum(r["memory"]["encoded_here"] for r in ok) == 4
    assert {r["memory"]["frames"] for r in ok if r["id"].startswith("v0-")} == {24}
    if shutil.which("ss"):
        names = {name for name, _ in sockets}  # ss cuts names at 15 characters
        assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::Batch") for n in names), names
        assert [s for s in sockets if not is_loopback(s[1])] == []
        assert peers == [], "every connection is between loopback addresses"


def test_killed_worker_still_answers_every_request_once(cluster, batch, expected, tmp_path):
    """SIGKILL a worker process in the middle of a group: Ray restarts it and runs the group
    again; every request is recorded exactly once, with the answers of one process."""
    requests, _ = batch
    out = tmp_path / "answers.jsonl"
    result, killed, workers = {}, [], []
    thread = threading.Thread(target=lambda: result.update(
        summary=run_batch(requests, out, CHECKPOINT, workers=2, max_retries=2, progress=False)), daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE_S
    while not killed and thread.is_alive() and time.monotonic() < deadline:
        busy = processes("ray::BatchWorker.run", descendants())
        if busy:
            workers.extend(processes("ray::BatchWorker", descendants()))
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])
        time.sleep(0.01)
    thread.join(DEADLINE_S)
    assert killed and not thread.is_alive()
    records = _lines(out)
    _check(records, expected)
    pids = {r["worker"]["pid"] for r in records}
    assert pids - set(workers), "the restarted worker (a new process) ran the killed worker's group again"
    assert (result["summary"].answered, result["summary"].failed) == (12, 1)


class _Stop(Exception):
    pass


def test_restarted_run_answers_only_the_rest(cluster, batch, expected, tmp_path):
    """Interrupt a run after 5 records, tear its last line as a crash mid-write would, then
    rerun through the command line: only the 8 missing requests run."""
    requests, _ = batch
    out = tmp_path / "answers.jsonl"
    count = []

    def stop_after_five(record):
        count.append(record)
        if len(count) == 5:
            raise _Stop

    with pytest.raises(_Stop):
        run_batch(requests, out, CHECKPOINT, workers=1, progress=False, on_record=stop_after_five)
    first = _lines(out)
    assert len(first) == 5
    with open(out, "a") as f:
        f.write('{"id": "v3-q2", "status": "o')  # torn
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["batch", str(requests), "-o", str(out), "--model", str(CHECKPOINT), "--workers", "2",
                              "--json"])
    assert args.run(args) == 1  # the broken video is a failed request
    records = _lines(out)
    assert records[:5] == first, "recorded answers are kept as they were"
    _check(records, expected)
    assert read_records(out)["broken"]["status"] == "error"


def test_image_requests_answer_as_the_api_does(cluster, tmp_path):
    """``image`` (one image, the anyres path) and ``images`` (several, the multi-image path) run
    end to end on a worker and answer as ``VideoXL.generate(images=...)`` does in this process; the
    summary names the one failed request."""
    pictures = sorted(str(p) for p in frame_folder(tmp_path / "pictures", frames=2, seed=7).iterdir())
    rows = [{"id": "one", "image": pictures[0], "question": "What is it?", **OPTIONS},
            {"id": "two", "images": pictures, "question": "What changed?", **OPTIONS},
            {"id": "gone", "image": str(tmp_path / "missing.png"), "question": "And this?", **OPTIONS}]
    out = tmp_path / "answers.jsonl"
    summary = run_batch(write_jsonl(tmp_path / "images.jsonl", rows), out, CHECKPOINT, workers=1, progress=False)
    records = {r["id"]: r for r in _lines(out)}
    model = load_model(CHECKPOINT)
    for rid, images in (("one", pictures[0]), ("two", pictures)):
        want = model.generate(images=images, prompt=records[rid]["answers"][0]["question"], **OPTIONS)
        assert records[rid]["status"] == "ok", records[rid]
        assert records[rid]["answers"][0]["token_ids"] == want.token_ids
        assert records[rid]["memory"]["frames"] == model.encode(images=images).frames
    assert records["gone"]["error"]["message"] == f"image file not found: {tmp_path / 'missing.png'}"
    assert (summary.answered, summary.failed, summary.failed_ids) == (2, 1, ["gone"])
    assert str(summary).endswith(f"; failed: gone (their errors are in {out})")
