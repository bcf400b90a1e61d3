"""The OpenAI chat-completions wire format: the request and its conversation in, completions,
chunks and error objects out."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, ValidationError

from ..limits import Limits
from ..options import DEFAULT_RATIO, EncodeOptions, GenerationOptions
from ..prompt import IMAGE_MARKER

_TEXT_ROLES = ("system", "developer", "user", "assistant")


class APIError(Exception):
    """An error the client sees as an OpenAI error object."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")  # vLLM's continuous_usage_stats is refused, not ignored

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields the server uses. Every other field lands in ``model_extra`` and is checked by
    :func:`.fields.check_fields` (accepted only where its value changes nothing)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # vLLM's extra fields
    repetition_penalty: float | None = None
    ignore_eos: bool = False
    min_tokens: int = 0
    mm_processor_kwargs: dict | None = None
    media_io_kwargs: dict | None = None
    # the video's sampling and compression (also in mm_processor_kwargs / media_io_kwargs)
    num_frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    compression_ratio: int | list[int] | str = DEFAULT_RATIO


@dataclass
class Conversation:
    """A request's messages as the engine takes them."""

    system: str | None  # None: the model's default system prompt
    messages: list[dict]  # [{"role": "user"|"assistant", "content": str}], at least one user turn
    videos: list[tuple[str, str]] = field(default_factory=list)  # (url, param)
    images: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        """The system prompt and the turns' text: what the prompt budget counts."""
        return "\n".join([self.system or "", *(m["content"] for m in self.messages)])


def parse_request(body: bytes) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        if err["type"] == "json_invalid":
            raise APIError(400, f"the request body is not valid JSON: {err['msg']}") from None
        raise APIError(400, f"{param}: {err['msg']}" if param else err["msg"], param) from None


def check_request(req: ChatCompletionRequest, max_tokens_limit: int, max_frames_limit: int) -> int:
    """Validate the sampling fields and the server's limits (the visual request is checked where it
    is built, see ``Service``); the number of tokens to generate."""
    name = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if max_tokens is None:
        max_tokens = max_tokens_limit
    if max_tokens < 1:
        raise APIError(400, f"{name} must be at least 1, got {max_tokens}", name)
    if max_tokens > max_tokens_limit:
        raise APIError(400, f"{name}={max_tokens} exceeds the server's limit of {max_tokens_limit}", name)
    if req.temperature is not None and req.temperature < 0:
        raise APIError(400, f"temperature must be >= 0, got {req.temperature}", "temperature")
    for name in ("num_frames", "max_frames"):
        value = getattr(req, name)
        if value is not None and not 1 <= value <= max_frames_limit:
            raise APIError(400, f"{name} must be between 1 and the server's limit of {max_frames_limit}, "
                                f"got {value}", name)
    try:
        EncodeOptions(req.compression_ratio)
    except ValueError as e:
        raise APIError(400, f"{e}, a list of them, or 'config'", "compression_ratio") from None
    return max_tokens


def generation_options(req: ChatCompletionRequest, max_tokens: int, limits: Limits) -> dict:
    """OpenAI sampling fields → ``VideoXL.ask`` options, checked by the engine's own rules (the
    stop strings against ``limits``): sampling when temperature > 0, greedy otherwise (unset
    temperature included)."""
    sample = req.temperature is not None and req.temperature > 0
    options = {"max_new_tokens": max_tokens, "do_sample": sample,
               "temperature": req.temperature if sample else None, "top_p": req.top_p,
               "top_k": 0 if req.top_k == -1 else req.top_k,  # vLLM's -1: no top-k filter
               "repetition_penalty": req.repetition_penalty, "seed": req.seed, "stop": req.stop,
               "ignore_eos": req.ignore_eos, "min_tokens": req.min_tokens, "limits": limits}
    try:
        GenerationOptions.from_kwargs(**options)
    except (TypeError, ValueError) as e:
        raise APIError(400, str(e), str(e).split(" ", 1)[0]) from None
    return options


def parse_messages(messages: list) -> Conversation:
    """OpenAI messages → system prompt, text turns and the visual parts (in order).

    The visual input is one video or one or more images anywhere in the user turns; like the
    Python API, the engine puts it at the start of the first user turn.
    """
    if not messages:
        raise APIError(400, "messages must be a non-empty list", "messages")
    conv = Conversation(None, [])
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or "role" not in m:
            raise APIError(400, f"{where} must be an object with 'role' and 'content'", where)
        role = m["role"]
        if role not in _TEXT_ROLES:
            raise APIError(400, f"{where}.role {role!r} is not supported; use system, user or assistant",
                           f"{where}.role")
        if role in ("system", "developer"):
            if i != 0:
                raise APIError(400, f"{where}: a system message must come first", f"{where}.role")
            conv.system = _text(m.get("content"), f"{where}.content", conv, visual=False)
            continue
        text = _text(m.get("content"), f"{where}.content", conv, visual=role == "user")
        conv.messages.append({"role": role, "content": text})
    if not any(m["role"] == "user" for m in conv.messages):
        raise APIError(400, "messages has no user message", "messages")
    if conv.messages[-1]["role"] != "user":
        raise APIError(400, "the last message must be the user's question", f"messages[{len(messages) - 1}]")
    if conv.videos and conv.images:
        raise APIError(400, "a conversation takes one video or images, not both", conv.images[0][1])
    if len(conv.videos) > 1:
        raise APIError(400, f"a conversation takes one video, got {len(conv.videos)}", conv.videos[1][1])
    return conv


def _text(content, where: str, conv: Conversation, visual: bool) -> str:
    if isinstance(content, str):
        parts = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        parts = content
    else:
        raise APIError(400, f"{where} must be a string or a list of content parts", where)
    texts = []
    for j, part in enumerate(parts):
        at = f"{where}[{j}]" if isinstance(content, list) else where
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise APIError(400, f"{at}.text must be a string", f"{at}.text")
            if IMAGE_MARKER in text:
                raise APIError(400, f"{at}: the text holds '{IMAGE_MARKER}'; send the video or image as a "
                                    "video_url / image_url part instead", at)
            texts.append(text)
        elif kind in ("video_url", "image_url"):
            if not visual:
                raise APIError(400, f"{at}: {kind} parts are only accepted in user messages", at)
            ref = part.get(kind)
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str):
                raise APIError(400, f"{at}.{kind}.url must be a string", f"{at}.{kind}.url")
            (conv.videos if kind == "video_url" else conv.images).append((url, f"{at}.{kind}.url"))
        else:
            raise APIError(400, f"{at}: unknown content part type {kind!r}; expected 'text', 'video_url' "
                                "or 'image_url'", f"{at}.type")
    return "\n".join(texts)


# ---------------------------------------------------------------------- responses
def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def usage(out, info: dict) -> dict:
    """OpenAI usage. ``prompt_tokens``: the positions the answer attends to before its first token,
    the prompt's text tokens plus the memory's visual summary tokens (VSTs); the text tokens alone
    are ``vxl_fast.text_tokens``. The engine's other statistics and the request's timings are under
    ``vxl_fast``."""
    prompt = out.stats["prompt_tokens"] + out.stats["vsts"]
    stats = {("text_tokens" if k == "prompt_tokens" else k): v for k, v in out.stats.items() if k != "trace"}
    return {"prompt_tokens": prompt, "completion_tokens": len(out.token_ids),
            "total_tokens": prompt + len(out.token_ids), "vxl_fast": {**stats, **info}}


def completion(rid: str, created: int, model: str, fingerprint: str, out, info: dict) -> dict:
    return {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                         "logprobs": None, "finish_reason": FINISH[out.finish_reason]}],
            "usage": usage(out, info)}


def chunk(rid: str, created: int, model: str, fingerprint: str, delta: dict | None,
          finish: str | None = None, usage_: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": fingerprint, "choices": choices}
    if usage_ is not None:
        body["usage"] = usage_
    return body


def model_card(name: str, root: str, created: int | None = None) -> dict:
    return {"id": name, "object": "model", "created": created or int(time.time()), "owned_by": "vxl_fast",
            "root": root}
