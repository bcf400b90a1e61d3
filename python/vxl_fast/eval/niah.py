"""Video-XL's needle in a haystack (V-NIAH): a needle (an image or a short clip) inserted at a
depth of a haystack video, a multiple-choice question about it, over a grid of frame counts and
depths.

Work sharing: for one frame count, the frames before the needle are the same at every depth and
a memory is append-only, so one memory of the haystack is extended depth after depth and copied
at each depth's resume point (the last vision-batch boundary at or before the needle, so every
vision-tower call and every window sees what it sees when the haystack is encoded whole: the
answers are bit-identical to encoding each haystack whole).
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass, field

import torch

from ..api import VideoXL
from ..memory.state import EncodeStats
from ..options import check_count
from ..video_memory import VideoMemory


@dataclass(frozen=True)
class Needle:
    """The needle's frames (uint8 [k, H, W, 3], the haystack's size) and its question: ``options``
    are listed as (A), (B), ...; ``answer`` is the correct option's letter."""

    frames: torch.Tensor
    question: str
    options: tuple[str, ...]
    answer: str

    def __post_init__(self):
        if self.frames.dtype != torch.uint8 or self.frames.ndim != 4 or self.frames.shape[0] < 1:
            raise ValueError("the needle must be uint8 frames [k, H, W, 3] with k >= 1")
        check_options(self.options, self.answer)

    def prompt(self) -> str:
        lines = [self.question, *(f"({string.ascii_uppercase[i]}) {o}" for i, o in enumerate(self.options))]
        return "\n".join(lines) + "\nAnswer with the option's letter from the given choices directly."

    def correct(self, text: str) -> bool:
        """The answer names the right option: its letter first, or the option's text."""
        head = text.strip().lstrip("(").upper()
        letter = next((c for c in head[:1] if c in string.ascii_uppercase[:len(self.options)]), None)
        if letter is not None and (len(head) == 1 or not head[1].isalpha()):
            return letter == self.answer
        return text.strip().lower().startswith(self.options[ord(self.answer) - 65].lower())


def check_options(options, answer: str) -> None:
    """2 to 26 non-blank options; ``answer`` one of their letters."""
    if not 2 <= len(options) <= 26 or not all(isinstance(o, str) and o.strip() for o in options):
        raise ValueError(f"give 2 to 26 non-blank options, got {list(options)!r}")
    if answer not in string.ascii_uppercase[:len(options)]:
        raise ValueError(f"the answer must be one of the options' letters "
                         f"{string.ascii_uppercase[:len(options)]}, got {answer!r}")


def insert(haystack: torch.Tensor, needle: torch.Tensor, depth: float) -> tuple[torch.Tensor, int]:
    """The haystack's frames with the needle's inserted at ``depth`` percent; the needle's index."""
    at = round(depth / 100 * haystack.shape[0])
    return torch.cat([haystack[:at], needle, haystack[at:]]), at


@dataclass
class Cell:
    frames: int  # haystack frames (the needle's are added)
    depth: float  # percent
    answer: str
    correct: bool


@dataclass
class Grid:
    """Every cell's answer, and the windows compressed against encoding each haystack whole."""

    cells: list[Cell] = field(default_factory=list)
    windows_encoded: int = 0
    windows_naive: int = 0

    def accuracy(self, frames: int, depth: float) -> float:
        hits = [c.correct for c in self.cells if c.frames == frames and c.depth == depth]
        return sum(hits) / len(hits)


def check_grid(frame_counts, depths) -> None:
    if not frame_counts or not depths:
        raise ValueError("give at least one frame count and one depth")
    for n in frame_counts:
        check_count("frame count", n, low=1)
    for d in depths:
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d <= 100:
            raise ValueError(f"depths are percentages in [0, 100], got {d!r}")


def run(model: VideoXL, haystacks: dict[int, torch.Tensor], needle: Needle, depths, compression_ratio: int = 8,
        max_new_tokens: int = 8, reuse: bool = True) -> Grid:
    """Answer the needle's question at every (frame count, depth): ``haystacks`` maps each frame
    count to its haystack frames. ``reuse``: share the prefix memories (else encode each whole)."""
    check_grid(list(haystacks), depths)
    if not isinstance(compression_ratio, int):
        raise ValueError("the needle test pins one compression ratio (an integer)")
    grid = Grid()
    for n, hay in haystacks.items():
        if tuple(hay.shape[1:]) != tuple(needle.frames.shape[1:]):
            raise ValueError(f"the needle's frames are {tuple(needle.frames.shape[1:])}, the haystack's "
                             f"{tuple(hay.shape[1:])}; resize the needle")
        for depth, memory in memories(model, hay, needle, depths, compression_ratio, grid, reuse):
            text = model.ask(memory, needle.prompt(), max_new_tokens=max_new_tokens).text
            grid.cells.append(Cell(n, depth, text, needle.correct(text)))
    return grid


def memories(model: VideoXL, hay: torch.Tensor, needle: Needle, depths, ratio: int, grid: Grid, reuse: bool = True):
    """(depth, memory of the haystack with the needle at that depth) for each depth, in
    increasing order; the windows compressed are added to ``grid``'s counts."""
    if reuse:
        return _with_prefix(model, hay, needle, sorted(depths), ratio, grid)
    return (_whole(model, hay, needle, d, ratio, grid) for d in sorted(depths))


def _whole(model, hay, needle, depth, ratio, grid) -> tuple[float, VideoMemory]:
    memory = model.encode(frames=insert(hay, needle.frames, depth)[0], compression_ratio=ratio)
    grid.windows_encoded += len(memory.windows)
    grid.windows_naive += len(memory.windows)
    return depth, memory


def _with_prefix(model, hay, needle, depths, ratio, grid):
    """(depth, memory) for each depth, resuming one growing memory of the haystack's prefix."""
    batch = model.runner.vision_batch
    trunk, done = model.encode(compression_ratio=ratio), 0
    for depth in depths:
        at = round(depth / 100 * hay.shape[0])
        resume = at // batch * batch
        if resume > done:
            trunk.append(hay[done:resume])
            done = resume
        branch = fork(trunk)
        shared = len(branch.windows)
        branch.append(torch.cat([hay[resume:at], needle.frames, hay[at:]])).flush()
        grid.windows_encoded += len(branch.windows) - shared
        grid.windows_naive += len(branch.windows)
        yield depth, branch
    grid.windows_encoded += len(trunk.windows)


def fork(memory: VideoMemory) -> VideoMemory:
    """An independent copy of ``memory`` (its own K/V buffers and window list) to extend."""
    state = memory.state
    cache = memory.model.runner.grow(state.cache, state.cache.capacity)
    stage = dataclasses.replace(state.stage, k=torch.empty_like(state.stage.k), v=torch.empty_like(state.stage.v))
    copy = dataclasses.replace(state, cache=cache, stage=stage, windows=list(state.windows), stats=EncodeStats(),
                               trace=None, timestamps=None if state.timestamps is None else list(state.timestamps))
    return VideoMemory(memory.model, copy)
