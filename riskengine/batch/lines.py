"""The lines of a binary file, read a block at a time, with a length cap.

Reading a line at a time costs a call per line; splitting large blocks costs a fraction of
that. A line is what ends with ``\\n`` (or the end of the file); its newline is cut off. A
line longer than the cap is never held whole: it is reported as None (one entry, however
long it is) and its bytes are skipped up to its newline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

__all__ = ["READ_BYTES", "LineBlocks"]

READ_BYTES = 1 << 16
"""Bytes read from the file at a time (larger blocks measured slower: their memory is
returned to the system and taken again at each read)."""


class LineBlocks:
    """Iterates ``(lines, terminated)``: the lines completed by each block read, in file
    order, without their newline (None for a line longer than `limit` bytes);
    `terminated` is False only for the file's last line when it has no newline and is not
    overlong (it comes alone). `done` counts the bytes read so far.

    >>> import io
    >>> list(LineBlocks(io.BytesIO(b'ab\\n\\nxxxxxx\\nc'), limit=4))
    [([b'ab', b'', None], True), ([b'c'], False)]
    """

    def __init__(self, handle: IO[bytes], limit: int, read_bytes: int = READ_BYTES) -> None:
        self.handle = handle
        self.limit = limit
        self.read_bytes = read_bytes
        self.done = 0

    def __iter__(self) -> Iterator[tuple[list[bytes | None], bool]]:
        read, limit, size = self.handle.read, self.limit, self.read_bytes
        carry = b""
        skipping = False  # inside an overlong line: drop its bytes up to its newline
        while True:
            block = read(size)
            if not block:
                break
            self.done += len(block)
            if skipping:
                end = block.find(b"\n")
                if end < 0:
                    continue
                block = block[end + 1:]
                skipping = False
            data = carry + block if carry else block
            lines: list[bytes | None] = data.split(b"\n")  # type: ignore[assignment]
            carry = lines.pop()  # type: ignore[assignment]
            if len(data) > limit:
                lines = [None if line is not None and len(line) > limit else line
                         for line in lines]
                if len(carry) > limit:
                    lines.append(None)
                    carry, skipping = b"", True
            if lines:
                yield lines, True
        if carry:
            yield [carry], False
