"""Worker checkpoints: the engine's state and the input offsets it covers, in one folder.

``STATE_DIR/snapshot.pkl`` is `Engine.snapshot`; ``STATE_DIR/offsets.json`` maps
``"topic:partition"`` to the next offset to read. The snapshot is written first, then the
offsets, each atomically: a crash between the two leaves offsets older than the state,
and the events re-read from there are answered from the idempotency guard (their ids are
in the snapshot) without touching the state again. Newer offsets over an older state
would lose events, so the order matters.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from riskengine.engine import Engine
from riskengine.stream.base import StreamError

__all__ = ["Checkpoint"]

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot.pkl"
OFFSETS = "offsets.json"


class Checkpoint:
    """Reads and writes the checkpoint in `folder` (created when first written)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.snapshot_path = folder / SNAPSHOT
        self.offsets_path = folder / OFFSETS

    def restore(self, engine: Engine) -> dict[tuple[str, int], int]:
        """Load the snapshot into `engine` if there is one; return the saved offsets."""
        if not self.snapshot_path.exists():
            return {}
        engine.restore(self.snapshot_path)
        if not self.offsets_path.exists():
            log.warning("%s has no %s: the snapshot is used, input starts at the "
                        "group's committed offsets", self.folder, OFFSETS)
            return {}
        try:
            raw = json.loads(self.offsets_path.read_text(encoding="utf-8"))
            offsets = {(key.rpartition(":")[0], int(key.rpartition(":")[2])): int(value)
                       for key, value in raw.items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise StreamError(f"cannot read {self.offsets_path}: {exc}; remove the state "
                              "folder to start from the committed offsets") from None
        return offsets

    def save(self, engine: Engine, offsets: dict[tuple[str, int], int]) -> Path:
        """Snapshot `engine`, then record `offsets` (next offset to read per partition)."""
        engine.snapshot(self.snapshot_path)
        body = json.dumps({f"{topic}:{partition}": offset
                           for (topic, partition), offset in sorted(offsets.items())})
        fd, tmp = tempfile.mkstemp(prefix=f".{OFFSETS}.", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.offsets_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.snapshot_path
