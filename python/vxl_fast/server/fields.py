"""Every OpenAI and vLLM chat-completions request field: used (a field of
:class:`~.protocol.ChatCompletionRequest`), accepted because its value changes nothing, or refused
with a 400 naming it. A field nobody defines is refused too: nothing is ignored silently."""

from __future__ import annotations

from .protocol import APIError

# accepted with any value: they label the request and do not change the answer
LABELS = ("user", "metadata", "service_tier", "safety_identifier", "prompt_cache_key", "request_id", "priority",
          "cache_salt", "parallel_tool_calls")
# accepted only with the value that changes nothing (None, the field left out, always is)
NEUTRAL = {
    "n": (1,), "best_of": (1,), "use_beam_search": (False,), "logprobs": (False,), "top_logprobs": (0,),
    "prompt_logprobs": (), "presence_penalty": (0,), "frequency_penalty": (0,), "length_penalty": (1,),
    "min_p": (0,), "logit_bias": ({},), "bad_words": ([],), "allowed_token_ids": (), "stop_token_ids": ([],),
    "include_stop_str_in_output": (False,), "skip_special_tokens": (True,), "spaces_between_special_tokens": (True,),
    "tools": ([],), "tool_choice": ("none", "auto"), "functions": ([],), "function_call": ("none", "auto"),
    "response_format": ({"type": "text"},), "modalities": (["text"],), "audio": (), "prediction": (),
    "reasoning_effort": (), "verbosity": (), "web_search_options": (), "store": (False,), "echo": (False,),
    "add_generation_prompt": (True,), "continue_final_message": (False,), "add_special_tokens": (False,),
    "documents": (), "chat_template": (), "chat_template_kwargs": ({},), "truncate_prompt_tokens": (),
    "guided_json": (), "guided_regex": (), "guided_choice": (), "guided_grammar": (), "structural_tag": (),
    "guided_decoding_backend": (), "guided_whitespace_pattern": (), "structured_outputs": (),
    "logits_processors": (), "return_tokens_as_token_ids": (False,), "return_token_ids": (False,),
    "kv_transfer_params": (), "vllm_xargs": (), "thinking_token_budget": (),
}
_WHY = {
    "n": "only one choice (n=1) per request",
    "logprobs": "logprobs are not supported",
    "presence_penalty": "not supported (use repetition_penalty)",
    "frequency_penalty": "not supported (use repetition_penalty)",
    "tools": "tools are not supported",
    "response_format": "only {'type': 'text'} can be honoured (no constrained decoding)",
}
SAMPLING = ("num_frames", "fps", "max_frames")  # what mm_processor_kwargs / media_io_kwargs["video"] may set


def check_fields(extra: dict) -> None:
    """Refuse every field of ``extra`` (the fields the request model does not use) whose value
    would change the answer, and every field that is not an OpenAI or vLLM one."""
    for name, value in extra.items():
        if name in LABELS or value is None:
            continue
        if name not in NEUTRAL:
            raise APIError(400, f"unknown field {name!r}: it is neither an OpenAI nor a vLLM chat-completions "
                                "field this server knows", name, code="unknown_field")
        if not any(_same(value, v) for v in NEUTRAL[name]):
            why = _WHY.get(name, "not supported by this server" + (
                f" (only {' or '.join(map(repr, NEUTRAL[name]))})" if NEUTRAL[name] else ""))
            raise APIError(400, f"{name}={value!r} is not supported; {why}", name, code="unsupported_field")


def media_sampling(mm_processor_kwargs, media_io_kwargs) -> dict:
    """Frame sampling as vLLM users pass it: ``mm_processor_kwargs`` {num_frames, fps, max_frames}
    and ``media_io_kwargs`` {"video": {...the same}}; anything else in them is refused."""
    out: dict = {}
    if media_io_kwargs is not None:
        _mapping(media_io_kwargs, "media_io_kwargs")
        for kind in media_io_kwargs:
            if kind != "video":
                raise APIError(400, f"media_io_kwargs.{kind} is not supported; only media_io_kwargs.video "
                                    f"with {', '.join(SAMPLING)}", f"media_io_kwargs.{kind}")
        _merge(out, media_io_kwargs["video"], "media_io_kwargs.video")
    if mm_processor_kwargs is not None:
        _merge(out, mm_processor_kwargs, "mm_processor_kwargs")
    return out


def _merge(out: dict, kwargs, where: str) -> None:
    _mapping(kwargs, where)
    for key, value in kwargs.items():
        at = f"{where}.{key}"
        if key not in SAMPLING:
            raise APIError(400, f"{at} is not supported; {where} may set {', '.join(SAMPLING)}", at)
        number = (int, float) if key == "fps" else (int,)
        if isinstance(value, bool) or not isinstance(value, number):
            raise APIError(400, f"{at} must be a number, got {value!r}", at)
        if key in out and out[key][0] != value:
            raise APIError(400, f"{at}={value!r} contradicts {out[key][1]}={out[key][0]!r}", at)
        out[key] = (value, at)


def _mapping(value, where: str) -> None:
    if not isinstance(value, dict):
        raise APIError(400, f"{where} must be an object, got {value!r}", where)


def _same(value, neutral) -> bool:
    if isinstance(value, bool) or isinstance(neutral, bool):
        return value is neutral
    return value == neutral
