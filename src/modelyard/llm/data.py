"""Fine-tuning data: JSON Lines of chat conversations or prompt/completion pairs.

Each non-blank line is one example, either ``{"messages": [{"role", "content"}, ...]}``
(roles ``system``, ``developer``, ``user``, ``assistant``; the last message is the
assistant's answer that is learned) or ``{"prompt": "...", "completion": "..."}``. Errors
name the line::

    >>> parse_examples(b'{"prompt": "a", "completion": "b"}\\n{"prompt": 1}\\n')
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: line 2: 'prompt' must be a string
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidInput

ROLES = ("system", "developer", "user", "assistant")
MAX_EXAMPLES = 1_000_000


@dataclass(frozen=True)
class Example:
    """One training example: a chat (``messages``) or a plain ``prompt``, and the answer."""

    completion: str
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


def parse_examples(data: bytes) -> list[Example]:
    """Every example in a JSONL file; InvalidInput naming the first bad line."""
    return list(iter_examples(data.splitlines()))


def iter_examples(lines: Iterable[bytes]) -> Iterator[Example]:
    """The examples of JSONL ``lines``, one at a time, so a file can be checked without
    holding it; InvalidInput naming the first bad line, or a file with none."""
    kinds: set[bool] = set()
    count = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
        if not line.strip():
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"line {number}: not valid UTF-8", line=number) from None
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"line {number}: invalid JSON: {exc.msg} (column {exc.colno})", line=number
            ) from None
        except RecursionError:
            raise InvalidInput(f"line {number}: nested too deeply", line=number) from None
        example = _example(value, number)
        kinds.add(example.is_chat)
        if len(kinds) > 1:
            raise InvalidInput(
                f"line {number}: mixes chat ('messages') and prompt/completion examples",
                line=number,
            )
        count += 1
        if count > MAX_EXAMPLES:
            raise InvalidInput(f"more than {MAX_EXAMPLES} examples")
        yield example
    if not count:
        raise InvalidInput("the file holds no examples")


def _example(value: Any, number: int) -> Example:
    def bad(message: str) -> InvalidInput:
        return InvalidInput(f"line {number}: {message}", line=number)

    if not isinstance(value, dict):
        raise bad("each line must be a JSON object")
    if "messages" in value:
        messages = value["messages"]
        if not isinstance(messages, list) or not messages:
            raise bad("'messages' must be a non-empty list")
        clean: list[dict[str, str]] = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise bad(f"messages[{index}] must be an object")
            role, content = message.get("role"), message.get("content")
            if role not in ROLES:
                raise bad(f"messages[{index}].role must be one of {', '.join(ROLES)}")
            if not isinstance(content, str):
                raise bad(f"messages[{index}].content must be a string")
            clean.append({"role": role, "content": content})
        if clean[-1]["role"] != "assistant":
            raise bad("the last message must be the assistant's (the answer to learn)")
        if len(clean) < 2:
            raise bad("a conversation needs a message before the assistant's answer")
        return Example(completion=clean[-1]["content"], messages=tuple(clean[:-1]))
    if "prompt" in value or "completion" in value:
        for key in ("prompt", "completion"):
            if not isinstance(value.get(key), str):
                raise bad(f"'{key}' must be a string")
        return Example(completion=value["completion"], prompt=value["prompt"])
    raise bad("expected 'messages', or 'prompt' and 'completion'")


__all__ = ["Example", "iter_examples", "parse_examples"]
