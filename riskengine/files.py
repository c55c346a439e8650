"""Durable files, written atomically: snapshots, checkpoints and the service's small files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import orjson


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a temp file beside `path` with `write(handle)`, fsync, rename over `path`: a
    reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` atomically (`write_atomic`)."""
    write_atomic(path, lambda handle: handle.write(orjson.dumps(data,
                                                                option=orjson.OPT_INDENT_2)))


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when the file does not exist."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
