"""Multi-turn conversation about one encoded video."""

from __future__ import annotations

from .engine.stats import GenerationOutput
from .prompt import check_question
from .stream import TextStream


class Chat:
    """A conversation over a :class:`VideoMemory`: each question is asked with every earlier
    question and answer in the prompt (upstream's template), so turn 2 sees turn 1. The video is
    never re-encoded; only the text after it is run again."""

    def __init__(self, model, memory):
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
        return self.history + [{"role": "user", "content": check_question(question)}]

    def _record(self, question: str, out: GenerationOutput) -> None:
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": out.text}]
