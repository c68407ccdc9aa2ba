"""Prompts from chat messages, through the model's own chat template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelyard.errors import InvalidInput


class NoChatTemplate(InvalidInput):
    """The model has no chat template, so it cannot take chat messages."""


def render_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
) -> str:
    """The prompt text for ``messages`` ending with the assistant's turn to speak; ``tools``
    (OpenAI's ``{"type": "function", "function": {...}}`` entries) are rendered by the
    template as it renders them."""
    if not getattr(tokenizer, "chat_template", None):
        raise NoChatTemplate("the model has no chat template; use /v1/completions instead")
    try:
        text = tokenizer.apply_chat_template(
            list(messages),
            tools=list(tools) if tools else None,
            tokenize=False,
            add_generation_prompt=True,
        )
    except Exception as exc:
        raise InvalidInput(f"messages: the chat template refused them: {exc}") from exc
    if not isinstance(text, str):
        raise InvalidInput("messages: the chat template did not produce text")
    return text


__all__ = ["NoChatTemplate", "render_chat"]
