"""Every request field is used or refused with a 400 naming it; vLLM's ways of asking for frames
work; timings and usage mean what they say."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import needs_av  # noqa: E402
from server_harness import NAME, LiveServer, server_model, video_message  # noqa: E402

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def server():
    from vxl_fast.server import create_app

    live = LiveServer(create_app(server_model(), max_tokens=16, default_frames=8, max_frames=32))
    yield live
    live.close()


def question(**fields) -> dict:
    return {"model": NAME, "messages": [{"role": "user", "content": "What is it?"}], "max_tokens": 2, **fields}


def post(server, payload) -> httpx.Response:
    return httpx.post(server.url + CHAT, json=payload, timeout=120)


def refused(r: httpx.Response, message: str, param: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert message in err["message"] and err["param"] == param, err


@pytest.mark.parametrize("field, value, message", [
    ("response_format", {"type": "json_object"}, "only {'type': 'text'} can be honoured"),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}, "can be honoured"),
    ("logprobs", True, "logprobs are not supported"),
    ("top_logprobs", 3, "not supported"),
    ("presence_penalty", 0.5, "use repetition_penalty"),
    ("n", 2, "only one choice"),
    ("tools", [{"type": "function", "function": {"name": "f"}}], "tools are not supported"),
    ("logit_bias", {"17": 5}, "not supported"),
    ("min_p", 0.1, "not supported"),
    ("guided_json", {"type": "object"}, "not supported"),
    ("chat_template_kwargs", {"enable_thinking": False}, "not supported"),
    ("stop_token_ids", [5], "not supported"),
    ("use_beam_search", True, "not supported"),
    ("frobnicate", 1, "unknown field 'frobnicate'"),
])
def test_fields_that_would_change_the_answer_are_refused(server, field, value, message):
    refused(post(server, question(**{field: value})), message, field)


def test_fields_that_change_nothing_are_accepted(server):
    r = post(server, question(user="u1", metadata={"k": "v"}, response_format={"type": "text"}, n=1, logprobs=False,
                              presence_penalty=0, frequency_penalty=0.0, tools=[], tool_choice="none", store=False,
                              skip_special_tokens=True, priority=0, min_tokens=2, stop_token_ids=[], echo=None,
                              top_k=-1))
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("fields, message, param", [
    ({"mm_processor_kwargs": {"max_pixels": 100}}, "may set num_frames, fps, max_frames",
     "mm_processor_kwargs.max_pixels"),
    ({"mm_processor_kwargs": {"num_frames": "8"}}, "must be a number", "mm_processor_kwargs.num_frames"),
    ({"mm_processor_kwargs": [1]}, "should be an object", "mm_processor_kwargs"),
    ({"media_io_kwargs": {"image": {"x": 1}}}, "only media_io_kwargs.video", "media_io_kwargs.image"),
    ({"media_io_kwargs": {"video": {"num_frames": 4}}, "mm_processor_kwargs": {"num_frames": 6}},
     "contradicts media_io_kwargs.video.num_frames=4", "mm_processor_kwargs.num_frames"),
    ({"num_frames": 4, "mm_processor_kwargs": {"num_frames": 6}}, "contradicts num_frames=4",
     "mm_processor_kwargs.num_frames"),
    ({"mm_processor_kwargs": {"num_frames": 33}}, "num_frames must be between 1 and the server's limit of 32",
     "num_frames"),
    ({"min_tokens": 3}, "min_tokens 3 exceeds max_new_tokens 2", "min_tokens"),
    ({"stream": True, "stream_options": {"continuous_usage_stats": True}}, "Extra inputs are not permitted",
     "stream_options.continuous_usage_stats"),
    ({"top_k": -2}, "top_k must be >= 0 (0 disables it)", "top_k"),
])
def test_media_kwargs_and_min_tokens_are_checked(server, fields, message, param):
    refused(post(server, question(**fields)), message, param)


@needs_av
@pytest.mark.parametrize("fields", [{"mm_processor_kwargs": {"num_frames": 6}},
                                    {"media_io_kwargs": {"video": {"num_frames": 6}}},
                                    {"mm_processor_kwargs": {"fps": 0.5, "max_frames": 6}}])
def test_vllm_frame_sampling_is_honoured(server, fields):
    r = post(server, {**question(**fields), "messages": [video_message("What happens?")]})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["vxl_fast"]["frames"] == 6  # not the server's default of 8


@needs_av
def test_timings_and_usage_mean_what_they_say(server):
    request = {**question(num_frames=5), "messages": [video_message("What happens?")]}
    first, second = (post(server, request).json()["usage"] for _ in range(2))
    miss, hit = first["vxl_fast"], second["vxl_fast"]
    assert miss["cache"] == "miss" and hit["cache"] == "hit"
    assert miss["encode_s"] > 0 and miss["ttft_s"] >= miss["encode_s"] + miss["prefill_s"] * 0.999
    assert miss["vision_s"] > 0 and miss["total_s"] >= miss["ttft_s"]
    assert hit["vision_s"] == 0.0 and hit["encode_s"] == 0.0 and hit["ttft_s"] == pytest.approx(hit["prefill_s"])
    for usage in (first, second):  # one prompt_tokens: the text tokens and the memory's VSTs
        assert "prompt_tokens" not in usage["vxl_fast"]
        assert usage["prompt_tokens"] == usage["vxl_fast"]["text_tokens"] + usage["vxl_fast"]["vsts"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
