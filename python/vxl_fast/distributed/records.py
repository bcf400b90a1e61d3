"""The answers file: one JSON record a line, one line per request, appended as requests finish.

An answered request::

    {"id": "clip1-q1", "status": "ok", "line": 1, "source": {"video": "/abs/clips/clip1.mp4"},
     "answers": [{"question": "...", "text": "...", "finish_reason": "eos", "token_ids": [...],
                  "stats": {...}}],
     "memory": {"frames": 64, "windows": 1, "vsts": 72, ..., "encoded_here": true},
     "worker": {"name": "worker-0", "node": "127.0.0.1", "pid": 4242, "device": "cuda:0"},
     "elapsed_s": 1.9}

A failed one has ``"status": "error"`` and ``"error": {"type": "FileNotFoundError",
"message": "..."}`` instead of ``answers``/``memory``. Reopening the file for a new run skips
every id already in it (``retry_failed`` drops the error records first, so they run again); a
line torn by a crash mid-write is cut off. Every write is one flushed line, so the file is
valid JSONL after any interruption, with at most one record per id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .requests import Request


def ok_record(request: Request, answers: list[dict], memory: dict, worker: dict, elapsed_s: float) -> dict:
    return {"id": request.id, "status": "ok", "line": request.line, "source": request.source,
            "answers": answers, "memory": memory, "worker": worker, "elapsed_s": round(elapsed_s, 4)}


def error_record(request: Request, error: BaseException | tuple[str, str], worker: dict | None,
                 elapsed_s: float = 0.0) -> dict:
    kind, message = (type(error).__name__, str(error)) if isinstance(error, BaseException) else error
    return {"id": request.id, "status": "error", "line": request.line, "source": request.source,
            "error": {"type": kind, "message": message}, "worker": worker, "elapsed_s": round(elapsed_s, 4)}


def read_records(path: str | os.PathLike) -> dict:
    """id → record of an answers file (a torn last line is ignored)."""
    return {r["id"]: r for r in _parse(Path(path))[0]}


class AnswerFile:
    """Appends records to ``path``; ``done`` holds the ids already recorded (before and now)."""

    def __init__(self, path: str | os.PathLike, retry_failed: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records, good_bytes = _parse(self.path) if self.path.exists() else ([], 0)
        if self.path.exists() and good_bytes < self.path.stat().st_size:
            os.truncate(self.path, good_bytes)  # the torn line of an interrupted write
        if retry_failed and any(r["status"] != "ok" for r in records):
            records = [r for r in records if r["status"] == "ok"]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            tmp.replace(self.path)
        self.done = {r["id"] for r in records}
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> bool:
        """Append ``record`` unless its id is already recorded; True when written."""
        if record["id"] in self.done:
            return False
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.done.add(record["id"])
        return True

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AnswerFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parse(path: Path) -> tuple[list[dict], int]:
    """The records of ``path`` and the byte length of its complete lines."""
    data = path.read_bytes()
    records, offset = [], 0
    for number, raw in enumerate(data.splitlines(keepends=True), 1):
        complete = raw.endswith(b"\n")
        try:
            record = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            if not complete:
                break
            raise ValueError(f"{path}: line {number} is not a JSON record; is this an answers file?") from None
        if record is not None:
            if not isinstance(record, dict) or "id" not in record or "status" not in record:
                raise ValueError(f"{path}: line {number} is not an answers record (no 'id' and 'status')")
            if not complete:
                break  # a record cut exactly at its end still lacks its newline: written again
            records.append(record)
        offset += len(raw)
    return records, offset
