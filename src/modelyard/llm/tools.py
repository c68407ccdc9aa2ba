"""Tool calls in model output: the Hermes / Qwen format, read as it streams, and its grammar.

Models trained on this format (Hermes, Qwen 2 and later, many fine-tunes) answer a call as::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

one block per call, the tools having been listed by their chat template. :class:`ToolCallReader`
reads generated text piece by piece and says what is plain content, where a call starts (its
name) and each fragment of its arguments, so an answer streams as OpenAI streams tool calls.
:func:`tool_call_grammar` is the grammar that forces such blocks, with each call's arguments
valid under its function's parameter schema.

Example::

    reader = ToolCallReader()
    events = reader.push('<tool_call>\\n{"name": "f", "arguments": {"x": 1}}') + reader.finish()
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.llm.grammar import GrammarCompiler, lark_json, lark_string

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


def supports_tools(chat_template: str | None) -> bool:
    """Whether a chat template renders ``tools`` in the Hermes format this module reads."""
    return bool(chat_template) and "tools" in chat_template and OPEN in chat_template  # type: ignore[operator]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ToolCall:
    """One call as OpenAI returns it: ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str = ""

    def as_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class Content:
    """Plain text of the answer."""

    text: str


@dataclass
class CallStart:
    """A call begins: its position among the calls, id and function name."""

    index: int
    call: ToolCall


@dataclass
class Arguments:
    """More text of call ``index``'s arguments."""

    index: int
    text: str


Event = Content | CallStart | Arguments


@dataclass
class _JsonScan:
    """Where a JSON value being read ends: nesting depth outside strings."""

    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    started: bool = False

    def feed(self, text: str) -> int:
        """How many characters of ``text`` belong to the value (len(text) if not ended)."""
        for i, ch in enumerate(text):
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
                continue
            if ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
                self.started = True
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    return i + 1
        return len(text)


@dataclass
class ToolCallReader:
    """Splits generated text into content and tool calls as it arrives.

    Content that might be the start of ``<tool_call>`` is held back until the next text
    shows whether it is. Inside a block, the call is announced once its name is read, and its
    arguments are passed on as they come; a block that is not a well-formed call is given
    back as content when it closes (or when the text ends).
    """

    calls: list[ToolCall] = field(default_factory=list)
    _mode: str = "content"
    _buffer: str = ""
    _block: str = ""
    _scan: _JsonScan = field(default_factory=_JsonScan)
    content: str = ""

    def push(self, text: str) -> list[Event]:
        self._buffer += text
        events: list[Event] = []
        while True:
            before = (self._mode, len(self._buffer))
            events.extend(self._advance())
            if (self._mode, len(self._buffer)) == before:
                return events

    def _advance(self) -> list[Event]:
        if self._mode == "content":
            at = self._buffer.find(OPEN)
            if at >= 0:
                text, self._buffer = self._buffer[:at], self._buffer[at + len(OPEN) :]
                self._mode, self._block = "header", ""
                return self._content(text)
            hold = _overlap(self._buffer, OPEN)
            text = self._buffer[: len(self._buffer) - hold]
            self._buffer = self._buffer[len(text) :]
            return self._content(text)
        if self._mode == "header":
            self._block += self._buffer
            self._buffer = ""
            end = self._block.find(CLOSE)
            match = _HEADER.match(self._block)
            if match is not None and (end < 0 or match.end() <= end):
                rest = self._block[match.end() :]
                name = json.loads(f'"{match.group(1)}"')
                call = ToolCall(new_call_id(), name)
                self.calls.append(call)
                self._mode, self._scan, self._block = "arguments", _JsonScan(), ""
                self._buffer = rest
                return [CallStart(len(self.calls) - 1, call)]
            if end >= 0:
                return self._close_unread(end)
            return []
        if self._mode == "arguments":
            call = self.calls[-1]
            if not self._scan.started:
                self._buffer = self._buffer.lstrip()
            used = self._scan.feed(self._buffer)
            piece, self._buffer = self._buffer[:used], self._buffer[used:]
            if self._scan.started and self._scan.depth == 0:
                self._mode = "tail"
            if not piece:
                return []
            call.arguments += piece
            return [Arguments(len(self.calls) - 1, piece)]
        # tail: the rest of the block after the arguments (the closing brace, the tag)
        end = self._buffer.find(CLOSE)
        if end >= 0:
            self._buffer = self._buffer[end + len(CLOSE) :]
            self._mode = "content"
        return []

    def _close_unread(self, end: int) -> list[Event]:
        """A block closed without a name and arguments first: read it whole, or as content."""
        block, after = self._block[:end], self._block[end + len(CLOSE) :]
        self._mode, self._block, self._buffer = "content", "", after
        try:
            value = json.loads(block)
            name, arguments = value["name"], value.get("arguments", {})
            if not isinstance(name, str):
                raise TypeError(name)
        except (ValueError, TypeError, KeyError):
            return self._content(f"{OPEN}{block}{CLOSE}")
        call = ToolCall(new_call_id(), name, json.dumps(arguments, ensure_ascii=False))
        self.calls.append(call)
        index = len(self.calls) - 1
        return [CallStart(index, ToolCall(call.id, name)), Arguments(index, call.arguments)]

    def _content(self, text: str) -> list[Event]:
        if not text or (self.calls and not text.strip()):
            return []  # nothing, or the line breaks between calls
        self.content += text
        return [Content(text)]

    def finish(self) -> list[Event]:
        """The text ended: give back what is still held."""
        rest, self._buffer = self._buffer, ""
        if self._mode == "content":
            return self._content(rest)
        if self._mode == "header":
            block, self._block = self._block + rest, ""
            self._mode = "content"
            return self._content(f"{OPEN}{block}")
        return []

    def message_content(self) -> str | None:
        """The answer's text beside its calls (None when there is only calls)."""
        if not self.calls:
            return self.content
        text = self.content.strip()
        return text or None


def read_tool_calls(text: str) -> tuple[str | None, list[ToolCall]]:
    """(content, calls) of a whole answer."""
    reader = ToolCallReader()
    reader.push(text)
    reader.finish()
    return reader.message_content(), reader.calls


def _overlap(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def call_schema(name: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON of one call of ``name``: its name, then arguments valid under ``parameters``."""
    return {
        "type": "object",
        "properties": {
            "name": {"const": name},
            "arguments": parameters if parameters is not None else {"type": "object"},
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_call_grammar(
    grammars: GrammarCompiler,
    functions: Sequence[tuple[str, dict[str, Any] | None]],
    *,
    parallel: bool,
    content_schema: dict[str, Any] | None = None,
) -> str:
    """A Lark grammar of one call (or, with ``parallel``, one or more) to any of
    ``functions`` ((name, parameter schema) pairs), each in ``<tool_call>`` tags; with
    ``content_schema``, a JSON answer of that schema is allowed instead of calls."""
    open_tag, close_tag = grammars.marker(OPEN), grammars.marker(CLOSE)
    names = [f"fn_{i}" for i in range(len(functions))]
    lines = [
        f"calls: call ({lark_string(chr(10))} call)*" if parallel else "calls: call",
        f'call: {open_tag} "\\n" ({" | ".join(names)}) "\\n" {close_tag}',
    ]
    lines += [
        f"{rule}: {lark_json(call_schema(name, params))}"
        for rule, (name, params) in zip(names, functions, strict=True)
    ]
    if content_schema is not None:
        lines.insert(0, f"start: calls | answer\nanswer: {lark_json(content_schema)}")
    else:
        lines.insert(0, "start: calls")
    return "\n".join(lines)


__all__ = [
    "Arguments",
    "CallStart",
    "Content",
    "Event",
    "ToolCall",
    "ToolCallReader",
    "call_schema",
    "new_call_id",
    "read_tool_calls",
    "supports_tools",
    "tool_call_grammar",
]
