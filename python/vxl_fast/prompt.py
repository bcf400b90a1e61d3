"""Prompt assembly and tokenisation, as upstream's ``qwen_1_5`` conversation template does it."""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_MARKER = "<image>"
DEFAULT_SYSTEM = "You are a helpful assistant."
_ROLES = ("user", "assistant")


def build_prompt(question: str | None = None, messages: list[dict] | None = None,
                 system: str | None = None) -> str:
    """The CHATML prompt string with exactly one ``<image>`` marker.

    ``question``: one user turn, ``"<image>\\n" + question`` unless it already holds the marker.
    ``messages``: ``[{"role": "user"|"assistant"|"system", "content": str}, ...]``; an optional
    leading system message replaces ``system`` (default: upstream's "You are a helpful
    assistant."; "" for none); the marker is put at the start of the first user message when no
    message carries it.
    """
    if (question is None) == (messages is None):
        raise ValueError("pass exactly one of prompt= (a question) or messages= (a conversation)")
    if question is not None:
        messages = [{"role": "user", "content": check_question(question)}]
    messages = _check_messages(messages)
    check_system(system)
    system = DEFAULT_SYSTEM if system is None else system
    if messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    markers = sum(m["content"].count(IMAGE_MARKER) for m in messages)
    if markers > 1:
        raise ValueError(f"the conversation holds {markers} '{IMAGE_MARKER}' markers; at most one is supported")
    if markers == 0:
        first = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first] = {**messages[first], "content": f"{IMAGE_MARKER}\n" + messages[first]["content"]}
    out = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    for m in messages:
        out += f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


def _check_messages(messages) -> list[dict]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")
        role, content = m["role"], m["content"]
        if role not in _ROLES and not (role == "system" and i == 0):
            raise ValueError(f"messages[{i}] has role {role!r}; expected 'user' or 'assistant' "
                             "(or 'system' first)")
        if not isinstance(content, str):
            raise TypeError(f"messages[{i}]['content'] must be a string")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in out):
        raise ValueError("messages has no user message")
    if out[-1]["role"] == "user":
        check_question(out[-1]["content"])
    return out


def check_question(question) -> str:
    """A question must be a non-blank string."""
    if not isinstance(question, str):
        raise TypeError(f"the question must be a string, got {type(question).__name__}")
    if not question.strip():
        raise ValueError("the question is empty")
    return question


def check_system(system) -> None:
    """A system prompt is a string (None: the default)."""
    if system is not None and not isinstance(system, str):
        raise TypeError(f"system must be a string, got {type(system).__name__}")


def split_prefix(text: str) -> str:
    """A prompt's text before the visual span (the sink)."""
    return text.partition(IMAGE_MARKER)[0]


def prefix_text(system: str | None = None) -> str:
    """The prompt text before the visual span (the sink) for ``system`` (None: the default)."""
    return split_prefix(build_prompt("?", system=system))


def prefix_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt's text before the visual span."""
    return tokenize_prompt(tokenizer, text + IMAGE_MARKER).before


def system_of(prefix: str) -> str:
    """The system prompt a prefix carries ("" when it has none), to rebuild prompts after it."""
    head = "<|im_start|>system\n"
    if prefix.startswith(head) and "<|im_end|>" in prefix:
        return prefix[len(head):prefix.index("<|im_end|>")]
    return ""


@dataclass(frozen=True)
class TokenizedPrompt:
    before: list[int]  # ids before the visual span (the sink)
    after: list[int]  # ids after it (question, assistant header)


def tokenize_prompt(tokenizer, text: str) -> TokenizedPrompt:
    """Tokenise the text on each side of ``<image>`` separately (no BPE merge across it)."""
    before, marker, after = text.partition(IMAGE_MARKER)
    if not marker:
        raise ValueError(f"the prompt has no '{IMAGE_MARKER}' marker")
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"] if s else []  # noqa: E731
    return TokenizedPrompt(encode(before), encode(after))
