"""The batch request file: one JSON object a line, checked whole before any worker starts.

A line names one visual input and one or more questions::

    {"id": "clip1-q1", "video": "clips/clip1.mp4", "num_frames": 64, "question": "What happens?"}
    {"id": "clip1-q2", "video": "clips/clip1.mp4", "num_frames": 64,
     "questions": ["Who is there?", {"prompt": "Describe it.", "max_new_tokens": 256}],
     "temperature": 0.7, "do_sample": true, "seed": 1}

``id`` (a string or an integer, unique in the file) names the request in the output.
The visual input is ``video`` (a file, a folder of frames or a list of image files: frames in
that order), ``image`` (one image, upstream's anyres path) or ``images`` (a list of image files,
the multi-image path, as ``VideoXL.generate(images=[...])``); relative paths are relative to the
request file's folder. Encoding: ``num_frames`` or ``fps`` (+ ``max_frames``), ``sampling``,
``compression_ratio``, ``system``. Generation options (see :class:`vxl_fast.GenerationOptions`)
apply to every question of the line; a question object may override them.

Requests that encode the same input the same way share one memory: they form one
:class:`Group`, encoded once by one worker.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..options import DEFAULT_RATIO, EncodeOptions, GenerationOptions
from ..video.request import VisualRequest, is_video_file

SAMPLING_KEYS = ("num_frames", "fps", "max_frames", "sampling")
ENCODE_KEYS = (*SAMPLING_KEYS, "compression_ratio", "system")
GENERATION_KEYS = tuple(f.name for f in fields(GenerationOptions))
SOURCES = ("video", "image", "images")
KEYS = {"id", *SOURCES, "question", "questions", *ENCODE_KEYS, *GENERATION_KEYS}
MAX_LISTED = 20  # problems named in one error message


@dataclass(frozen=True)
class Question:
    prompt: str
    options: dict  # generation options, already checked by GenerationOptions.from_kwargs


@dataclass(frozen=True)
class Request:
    id: str | int
    line: int  # 1-based line number in the request file
    source: dict  # {"video": path or [paths]}, {"image": path} or {"images": [paths]}, paths absolute
    encode: dict  # keyword arguments of VideoXL.encode beyond the source
    questions: tuple[Question, ...]
    visual: VisualRequest  # ``source`` and the sampling keys of ``encode``, checked
    options: EncodeOptions  # the rest of ``encode``, checked

    @property
    def memory_key(self) -> str:
        """Equal for requests that produce the same memory."""
        return json.dumps([self.source, self.encode], sort_keys=True)


@dataclass
class Group:
    """Requests answered from one memory: encoded once, by one worker."""

    key: str
    requests: list[Request] = field(default_factory=list)


def read_requests(path: str | os.PathLike, default_frames: int | None = None) -> list[Request]:
    """Parse and check every line of ``path`` (blank lines are skipped).

    ``default_frames`` is the ``num_frames`` of video requests that give neither it nor ``fps``.
    Raises ``FileNotFoundError``, or ``ValueError`` naming each bad line (at most
    ``MAX_LISTED``); nothing is run when any line is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no request file {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return parse_requests(enumerate(lines, 1), base=path.resolve().parent, default_frames=default_frames,
                          name=str(path))


def parse_requests(lines, base: Path, default_frames: int | None = None, name: str = "requests") -> list[Request]:
    """``lines``: (line number, text or dict) pairs. See :func:`read_requests`."""
    requests, problems, seen = [], [], {}
    for number, item in lines:
        if isinstance(item, str):
            if not item.strip():
                continue
            try:
                item = json.loads(item)
            except json.JSONDecodeError as e:
                problems.append(f"line {number}: not JSON ({e.msg} at column {e.colno})")
                continue
        try:
            request = _request(item, number, base, default_frames)
        except (TypeError, ValueError) as e:
            problems.append(f"line {number}: {e}")
            continue
        if request.id in seen:
            problems.append(f"line {number}: id {request.id!r} already used on line {seen[request.id]}")
            continue
        seen[request.id] = number
        requests.append(request)
    if problems:
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise ValueError(f"{name}: {len(problems)} bad request line{'s' * (len(problems) > 1)}:\n  "
                         + "\n  ".join(problems[:MAX_LISTED]) + more)
    return requests


def group_requests(requests: list[Request]) -> list[Group]:
    """Requests sharing a memory, in the order of their first line."""
    groups: dict[str, Group] = {}
    for r in requests:
        groups.setdefault(r.memory_key, Group(r.memory_key)).requests.append(r)
    return list(groups.values())


def _request(item, number: int, base: Path, default_frames: int | None) -> Request:
    if not isinstance(item, dict):
        raise TypeError(f"expected a JSON object, got {type(item).__name__}")
    unknown = sorted(set(item) - KEYS)
    if unknown:
        raise ValueError(f"unknown key{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; "
                         f"the keys are {', '.join(sorted(KEYS))}")
    rid = item.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
        raise TypeError(f"'id' must be a non-empty string or an integer, got {rid!r}")
    source = _source(item, base)
    encode = {k: item[k] for k in ENCODE_KEYS if item.get(k) is not None}
    if "num_frames" not in encode and "fps" not in encode and default_frames is not None and \
            is_video_file(source.get("video")):
        encode["num_frames"] = default_frames
    # what can be checked without the model; the video itself is read by a worker
    visual = VisualRequest(video=source.get("video"), images=source.get("image", source.get("images")),
                           **{k: encode[k] for k in SAMPLING_KEYS if k in encode})
    options = EncodeOptions(encode.get("compression_ratio", DEFAULT_RATIO), system=encode.get("system"))
    questions = _questions(item, {k: item[k] for k in GENERATION_KEYS if k in item})
    return Request(rid, number, source, encode, questions, visual, options)


def _source(item: dict, base: Path) -> dict:
    given = [k for k in SOURCES if k in item]
    if len(given) != 1:
        raise ValueError("give exactly one of 'video', 'image' or 'images'" +
                         (f" (got {', '.join(given)})" if given else ""))
    key = given[0]
    value = item[key]
    if key == "images" or (key == "video" and isinstance(value, list)):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise TypeError(f"'{key}' as a list must hold image file paths (strings)")
        return {key: [_path(v, base) for v in value]}
    if not isinstance(value, str) or not value:
        raise TypeError(f"'{key}' must be a file path, got {value!r}")
    return {key: _path(value, base)}


def _path(value: str, base: Path) -> str:
    return str(base / os.path.expanduser(value))


def _questions(item: dict, shared: dict) -> tuple[Question, ...]:
    if ("question" in item) == ("questions" in item):
        raise ValueError("give 'question' (one) or 'questions' (a list), not " + ("both" if "question" in item else
                                                                                   "neither"))
    raw = [item["question"]] if "question" in item else item["questions"]
    if not isinstance(raw, list) or not raw:
        raise TypeError("'questions' must be a non-empty list")
    out = []
    for i, q in enumerate(raw):
        where = "'question'" if "question" in item else f"questions[{i}]"
        if isinstance(q, dict):
            extra = sorted(set(q) - {"prompt", *GENERATION_KEYS})
            if extra:
                raise ValueError(f"{where}: unknown key{'s' * (len(extra) > 1)} {', '.join(map(repr, extra))}; "
                                 f"a question object has 'prompt' and generation options")
            prompt, options = q.get("prompt"), {**shared, **{k: v for k, v in q.items() if k != "prompt"}}
        else:
            prompt, options = q, dict(shared)
        if not isinstance(prompt, str) or not prompt.strip():
            raise TypeError(f"{where}: the question must be a non-empty string, got {prompt!r}")
        try:
            GenerationOptions.from_kwargs(**options)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where}: {e}") from None
        out.append(Question(prompt, options))
    return tuple(out)
