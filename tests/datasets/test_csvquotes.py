"""The quote tracker agrees with a byte-by-byte reading of CSV quoting, however the
stream is cut into chunks."""

from __future__ import annotations

import random

import pytest

from modelyard.datasets.formats.csvquotes import QuoteTracker


def open_quote_line(data: bytes) -> int:
    """The line of a quoted field still open at the end of ``data``, read byte by byte.

    pyarrow's rules: a quote opens a field only at its start, is literal elsewhere in an
    unquoted field, and inside quotes ``""`` is a quote while a lone ``"`` closes.
    """
    state, line, opened, i = "start", 1, 0, 0
    if data.startswith(b"\xef\xbb\xbf"):
        i = 3
    while i < len(data):
        byte = data[i : i + 1]
        if state == "quoted":
            if byte == b'"':
                if data[i + 1 : i + 2] == b'"':
                    i += 1
                else:
                    state = "unquoted"
        elif byte in (b",", b"\n", b"\r"):
            state = "start"
        elif byte == b'"' and state == "start":
            state, opened = "quoted", line
        else:
            state = "unquoted"
        line += byte == b"\n"
        i += 1
    return opened if state == "quoted" else 0


def tracked(data: bytes, chunk: int) -> int:
    tracker = QuoteTracker()
    for start in range(0, len(data), chunk):
        tracker(memoryview(data[start : start + chunk]))
    tracker.finish()
    assert tracker.quoted == (tracker.open_line > 0)
    return tracker.open_line


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b'a,b\n1,"x\n', 2),
        (b'a,b\n1,"x"\n', 0),
        (b'a,b\n1,"x""\n', 2),
        (b'a,b\n1,"x"""\n', 0),
        (b'a,b\n1,x"y\n', 0),
        (b'a,b\n1, "x\n', 0),
        (b'a,b\r\n1,"two\r\nlines"\r\n2,"\r\n', 4),
        (b'\xef\xbb\xbf"a\n', 1),
        (b'"a","b"\n"",""\n', 0),
    ],
)
def test_examples(data: bytes, line: int) -> None:
    assert open_quote_line(data) == line
    for chunk in (1, 2, 3, len(data)):
        assert tracked(data, chunk) == line


def test_random_streams_in_random_chunks() -> None:
    pieces = [b'"', b'"', b'""', b"a", b",", b"\n", b"\r", b"\xef\xbb\xbf"]
    rng = random.Random(20261206)
    for _ in range(2000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        expected = open_quote_line(data)
        for chunk in (1, 2, 3, 7, 64):
            assert tracked(data, chunk) == expected, (data, chunk)
