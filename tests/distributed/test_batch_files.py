"""The batch request and answers files, without Ray: every bad line named before anything runs,
groups by memory, resume skipping, torn lines and --retry-failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vxl_fast.distributed.records import AnswerFile, error_record, ok_record, read_records
from vxl_fast.distributed.requests import group_requests, parse_requests, read_requests


def _parse(*rows, base="/data", default_frames=None):
    return parse_requests(enumerate(rows, 1), base=Path(base), default_frames=default_frames)


def test_a_request_line_and_its_defaults(tmp_path):
    (tmp_path / "frames").mkdir()
    rows = [{"id": 1, "video": "a.mp4", "question": "What?", "max_new_tokens": 7},
            {"id": "b", "video": "frames", "questions": ["Who?", {"prompt": "Why?", "max_new_tokens": 3, "stop": ["x"]}],
             "temperature": 0.5, "do_sample": True},
            {"id": "c", "image": "~/pic.png", "question": "Color?", "system": "Be brief."}]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(map(json.dumps, rows[:2])) + "\n\n" + json.dumps(rows[2]) + "\n")
    a, b, c = read_requests(path, default_frames=32)
    assert a.source == {"video": str(tmp_path / "a.mp4")} and a.encode == {"num_frames": 32} and a.line == 1
    assert a.questions[0].options == {"max_new_tokens": 7}
    assert b.encode == {}, "a folder of frames takes every frame"
    assert [q.options for q in b.questions] == [{"temperature": 0.5, "do_sample": True},
                                                {"temperature": 0.5, "do_sample": True, "max_new_tokens": 3,
                                                 "stop": ["x"]}]
    assert c.source["image"].endswith("/pic.png") and "~" not in c.source["image"] and c.line == 4
    assert c.encode == {"system": "Be brief."}


def test_groups_share_one_memory():
    rs = _parse({"id": 1, "video": "a.mp4", "num_frames": 8, "question": "q"},
                {"id": 2, "video": "b.mp4", "num_frames": 8, "question": "q"},
                {"id": 3, "video": "/data/a.mp4", "num_frames": 8, "question": "other", "max_new_tokens": 3},
                {"id": 4, "video": "a.mp4", "num_frames": 16, "question": "q"})
    assert [[r.id for r in g.requests] for g in group_requests(rs)] == [[1, 3], [2], [4]]


@pytest.mark.parametrize("row, message", [
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"video": "a.mp4", "question": "q"}', "'id' must be a non-empty string or an integer, got None"),
    ('{"id": true, "video": "a.mp4", "question": "q"}', "'id' must be a non-empty string or an integer"),
    ('{"id": 1, "question": "q"}', "give exactly one of 'video', 'image' or 'images'"),
    ('{"id": 1, "video": "a", "image": "b", "question": "q"}', "(got video, image)"),
    ('{"id": 1, "images": "a.png", "question": "q"}', "'images' as a list must hold image file paths"),
    ('{"id": 1, "images": ["a.png"], "question": "q", "fps": 1}', "num_frames= and fps= only apply to video="),
    ('{"id": 1, "video": "a.mp4"}', "give 'question' (one) or 'questions' (a list), not neither"),
    ('{"id": 1, "video": "a.mp4", "question": "q", "questions": ["r"]}', "not both"),
    ('{"id": 1, "video": "a.mp4", "questions": []}', "'questions' must be a non-empty list"),
    ('{"id": 1, "video": "a.mp4", "question": "  "}', "the question must be a non-empty string"),
    ('{"id": 1, "video": "a.mp4", "question": "q", "temprature": 1}', "unknown key 'temprature'"),
    ('{"id": 1, "video": "a.mp4", "question": "q", "max_new_tokens": 0}', "'question': max_new_tokens must be"),
    ('{"id": 1, "video": "a.mp4", "questions": ["q", {"prompt": "r", "top_p": 2}]}', "questions[1]: top_p must be in"),
    ('{"id": 1, "video": "a.mp4", "questions": [{"prompt": "r", "fps": 2}]}', "questions[0]: unknown key 'fps'"),
    ('{"id": 1, "video": "a.mp4", "question": "q", "num_frames": 8, "fps": 1}', "num_frames= or fps=, not both"),
    ('{"id": 1, "video": "a.mp4", "question": "q", "num_frames": -1}', "num_frames must be a positive integer"),
    ('{"id": 1, "video": "a.mp4", "question": "q", "max_frames": 9}', "max_frames= only applies with fps="),
    ('{"id": 1, "video": "a.mp4", "question": "q", "sampling": "fast"}', "unknown sampling 'fast'; use 'exact' or 'keyframe'"),
    ('{"id": 1, "image": "a.png", "question": "q", "num_frames": 4}', "num_frames= and fps= only apply to video="),
    ('{"id": 1, "video": [], "question": "q"}', "'video' as a list must hold image file paths"),
    ('{"id": 1, "video": "a.mp4", "question": "q", "system": 3}', "system must be a string"),
    ("{not json", "not JSON"),
])
def test_each_bad_line_is_named(tmp_path, row, message):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 0, "video": "ok.mp4", "question": "fine"}\n' + row + "\n")
    with pytest.raises(ValueError) as e:
        read_requests(path)
    assert "1 bad request line:" in str(e.value) and "line 2: " in str(e.value)
    assert message in str(e.value)


def test_all_bad_lines_at_once_and_duplicates(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = ['{"id": 1, "video": "a.mp4", "question": "q"}'] * 2 + ["{}"] * 30
    path.write_text("\n".join(rows))
    with pytest.raises(ValueError, match="31 bad request lines") as e:
        read_requests(path)
    assert "line 2: id 1 already used on line 1" in str(e.value) and "... and 11 more" in str(e.value)
    with pytest.raises(FileNotFoundError, match="no request file"):
        read_requests(tmp_path / "missing.jsonl")


def _records(n, status="ok"):
    rs = _parse(*({"id": f"r{i}", "video": "a.mp4", "question": "q"} for i in range(n)))
    if status == "ok":
        return [ok_record(r, [], {}, {"name": "w"}, 0.1) for r in rs]
    return [error_record(r, FileNotFoundError("gone"), None) for r in rs]


def test_answers_file_resumes_cuts_a_torn_line_and_retries_failures(tmp_path):
    out = tmp_path / "deep" / "answers.jsonl"
    ok, bad = _records(3), _records(4, "error")[3:]
    with AnswerFile(out) as f:
        assert [f.write(r) for r in ok + bad + ok[:1]] == [True] * 4 + [False]
    assert bad[0]["error"] == {"type": "FileNotFoundError", "message": "gone"}
    with open(out, "a") as f:
        f.write('{"id": "r9", "status": "o')
    with AnswerFile(out) as f:
        assert f.done == {"r0", "r1", "r2", "r3"}
    assert out.read_text().endswith("}\n") and len(out.read_text().splitlines()) == 4
    with AnswerFile(out, retry_failed=True) as f:
        assert f.done == {"r0", "r1", "r2"}
    assert sorted(read_records(out)) == ["r0", "r1", "r2"]


def test_answers_file_refuses_another_file(tmp_path):
    out = tmp_path / "a.jsonl"
    out.write_text("hello\n{}\n")
    with pytest.raises(ValueError, match="line 1 is not a JSON record"):
        AnswerFile(out)
    out.write_text('{"x": 1}\n')
    with pytest.raises(ValueError, match="line 1 is not an answers record"):
        AnswerFile(out)


def test_requests_carry_the_checked_visual_request(tmp_path):
    from vxl_fast.options import EncodeOptions
    from vxl_fast.video.request import VisualRequest

    (a, b) = parse_requests(enumerate([{"id": 1, "video": "a.mp4", "question": "q", "compression_ratio": [4, 8]},
                                       {"id": 2, "image": "p.png", "question": "q", "system": ""}], 1),
                            base=tmp_path, default_frames=16)
    assert a.visual == VisualRequest(video=str(tmp_path / "a.mp4"), num_frames=16)
    assert a.options == EncodeOptions((4, 8))
    assert b.visual == VisualRequest(images=str(tmp_path / "p.png")) and b.options == EncodeOptions(system="")
