"""Multi-turn conversation about one encoded video."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .generate import GenerationOutput
from .stream import TextStream

if TYPE_CHECKING:
    from .engine import VideoXL
    from .memory.video_memory import VideoMemory


class Chat:
    """A conversation over a :class:`VideoMemory`: each question is asked with every earlier
    question and answer in the prompt (upstream's template), so turn 2 sees turn 1. The video is
    never re-encoded; only the text after it is run again."""

    def __init__(self, model: "VideoXL", memory: "VideoMemory"):
        self.model, self.memory = model, memory
        self.history: list[dict] = []

    def ask(self, question: str, **kwargs) -> GenerationOutput:
        out = self.model.ask(self.memory, messages=self._messages(question), **kwargs)
        self._record(question, out)
        return out

    def stream(self, question: str, **kwargs) -> TextStream:
        inner = self.model.stream(self.memory, messages=self._messages(question), **kwargs)

        def pieces():
            yield from inner
            self._record(question, inner.output)
            return inner.output
        return TextStream(pieces())

    def reset(self) -> None:
        self.history.clear()

    def _messages(self, question: str) -> list[dict]:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        return self.history + [{"role": "user", "content": question}]

    def _record(self, question: str, out: GenerationOutput) -> None:
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": out.text}]
