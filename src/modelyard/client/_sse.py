"""A Server-Sent Events parser (the ``text/event-stream`` format of the HTML standard).

Lines are grouped into messages separated by a blank line. ``data`` lines are joined with
newlines, ``id``/``event``/``retry`` set the message's fields, lines starting with ``:`` are
comments (keep-alives) and unknown fields are ignored, as the standard asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    """One message of an event stream; fields the server did not send are ``None``."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None


def iter_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Parse decoded lines (without their line ends) into messages.

    A message is yielded when a blank line ends it, so a stream cut off mid-message yields
    nothing for that message: it will be sent again after a reconnect.
    """
    event: str | None = None
    data: list[str] = []
    last_id: str | None = None
    retry: int | None = None
    seen = False
    for line in lines:
        if not line:
            if seen:
                yield ServerSentEvent(
                    event=event, data="\n".join(data) if data else None, id=last_id, retry=retry
                )
            event, data, last_id, retry, seen = None, [], None, None, False
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            # An id containing NUL is ignored, per the standard.
            if "\0" not in value:
                last_id = value
        elif name == "retry":
            if value.isdigit():
                retry = int(value)
        else:
            continue
        seen = True
