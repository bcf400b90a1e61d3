"""What the command-line tools print: answers safe for a terminal, warnings without file paths, memory
summaries."""

from __future__ import annotations

import sys
import unicodedata

_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # Unicode categories escaped in answers


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line naming the program, not the installed file it came from."""
    print(f"vxl-fast: warning: {message}", file=sys.stderr if file is None else file, flush=True)


def printable(text: str) -> str:
    """``text`` safe for a terminal: control and format characters, line and paragraph separators
    and U+FFFD escaped (``\\x1b``, ``\\ufffd``); newlines and tabs kept."""
    return "".join(c if c in "\n\t" or not (unicodedata.category(c) in _UNSAFE or c == "\ufffd")
                   else c.encode("unicode_escape").decode("ascii") for c in text)


def memory_summary(memory) -> dict:
    """A memory's shape and encode times, for ``--json``."""
    return {"frames": memory.frames, "windows": len(memory.windows), "vsts": memory.num_vsts,
            "kv_slots": memory.kv_slots, "ratios": list(memory.ratios), **memory.stats}


def describe(memory, encoded: bool) -> str:
    """A memory in one line: frames → visual tokens → windows → VSTs, its KV cache (and encode times)."""
    s = memory.stats
    text = (f"{memory.frames} frames -> {memory.visual_tokens} visual tokens -> {len(memory.windows)} "
            f"windows -> {memory.num_vsts} VSTs kept (ratio {'/'.join(map(str, memory.ratios))}); "
            f"KV {memory.kv_slots} slots, {memory.kv_slots * memory.cache.slot_bytes / 2**20:.2f} MiB")
    if encoded:
        text += f"; encoded now: vision {s['vision_s']:.2f} s, compression {s['compress_s']:.2f} s"
    return text


def busy_hint(threads: int, load: float, cores: int) -> str | None:
    """A hint to use fewer threads when other processes keep the cores busy (``load``: the 1-minute load average)."""
    if threads > 1 and load > cores:
        return (f"vxl-fast: the CPUs are busy (load {load:.1f} on {cores} cores): --threads 1 may run many times "
                "faster")
    return None
