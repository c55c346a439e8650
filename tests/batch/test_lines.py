"""`LineBlocks`: the lines of a file whatever the block size, overlong lines as one None."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from riskengine.batch.lines import LineBlocks


def reference(data: bytes, limit: int) -> list[tuple[bytes | None, bool]]:
    """Split at every newline; the last piece is a line when not empty (unterminated,
    which an overlong line does not say)."""
    pieces = data.split(b"\n")
    last = pieces.pop()
    out: list[tuple[bytes | None, bool]] = [
        (None if len(p) > limit else p, True) for p in pieces]
    if last:
        out.append((None, True) if len(last) > limit else (last, False))
    return out


def read_all(data: bytes, limit: int, read_bytes: int) -> list[tuple[bytes | None, bool]]:
    blocks = LineBlocks(io.BytesIO(data), limit, read_bytes)
    out = [(line, terminated) for lines, terminated in blocks for line in lines]
    assert blocks.done == len(data)
    return out


line_text = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"x"))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(line_text, max_size=30), end=st.booleans(),
       limit=st.integers(1, 20), read_bytes=st.integers(1, 64))
def test_lines_are_the_same_whatever_the_block_size(lines: list[bytes], end: bool,
                                                     limit: int, read_bytes: int) -> None:
    data = b"\n".join(lines) + (b"\n" if end and lines else b"")
    assert read_all(data, limit, read_bytes) == reference(data, limit)


def test_an_overlong_line_is_one_none_and_is_never_held_whole() -> None:
    data = b"ok\n" + b"x" * 10_000 + b"\nafter\n" + b"y" * 150
    assert read_all(data, 100, 64) == [(b"ok", True), (None, True), (b"after", True),
                                       (None, True)]


def test_a_line_of_exactly_the_limit_is_kept() -> None:
    data = b"a" * 8 + b"\n" + b"b" * 8
    assert read_all(data, 8, 3) == [(b"a" * 8, True), (b"b" * 8, False)]


def test_empty_file_and_blank_lines() -> None:
    assert read_all(b"", 10, 4) == []
    assert read_all(b"\n\n", 10, 1) == [(b"", True), (b"", True)]
