"""Counters of the server and their Prometheus text exposition (format 0.0.4)."""

from __future__ import annotations

import threading
from collections import defaultdict

COUNTERS = {
    "vxl_requests_total": "Chat completion requests answered, by HTTP status.",
    "vxl_requests_refused_total": "Requests refused before they were read, by reason (host, api_key, content_type).",
    "vxl_requests_cancelled_total": "Requests whose client went away before the answer was complete.",
    "vxl_prompt_tokens_total": "Prompt tokens (text and VSTs) of answered requests.",
    "vxl_completion_tokens_total": "Tokens generated for answered requests.",
    "vxl_memory_cache_hits_total": "Requests whose video memory was already encoded (on the device or being encoded).",
    "vxl_memory_cache_disk_hits_total": "Requests whose video memory was loaded back from the cache folder.",
    "vxl_memory_cache_misses_total": "Requests whose video was decoded and encoded.",
    "vxl_encodes_total": "Videos (or images) encoded into memories.",
    "vxl_encodes_cancelled_total": "Encodes stopped because every client waiting for them went away.",
    "vxl_encode_seconds_total": "Seconds spent decoding and encoding videos.",
    "vxl_prefill_seconds_total": "Seconds spent on question prefill.",
    "vxl_decode_seconds_total": "Seconds spent generating tokens.",
    "vxl_memory_cache_evictions_total": "Memories evicted from the device tier.",
}
GAUGES = {
    "vxl_queue_length": "Requests waiting for the device.",
    "vxl_running_requests": "Device jobs running now.",
    "vxl_memory_cache_bytes": "Bytes of memories held in the cache, by tier.",
    "vxl_memory_cache_entries": "Memories held in the cache, by tier.",
}


class Metrics:
    def __init__(self):
        self._values: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self._lock = threading.Lock()

    def inc(self, name: str, value: float = 1.0, **labels) -> None:
        assert name in COUNTERS, name
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] += value

    def value(self, name: str, **labels) -> float:
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def render(self, gauges: dict[str, dict[tuple, float]]) -> str:
        """Every counter (0 when never touched) and the given gauges ``{name: {labels: value}}``."""
        lines = []
        with self._lock:
            series = {name: dict(self._values.get(name, {})) or {(): 0.0} for name in COUNTERS}
        for kind, names, values in (("counter", COUNTERS, series), ("gauge", GAUGES, gauges)):
            for name, help_ in names.items():
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
                for labels, v in values.get(name, {(): 0.0}).items():
                    lines.append(f"{name}{_labels(labels)} {_number(v)}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple) -> str:
    if not labels:
        return ""
    esc = lambda s: str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}"


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))
