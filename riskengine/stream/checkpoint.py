"""Worker checkpoints: the engine's state and the input offsets it covers, in one folder.

``STATE_DIR/snapshot.pkl`` is `Engine.snapshot`; ``STATE_DIR/offsets.json`` maps
``"topic:partition"`` to the next offset to read. The snapshot is written first, then the
offsets, each atomically: a crash between the two leaves offsets older than the state,
and the events re-read from there are answered from the idempotency guard (their ids are
in the snapshot) without touching the state again. Newer offsets over an older state
would lose events, so the order matters.

``STATE_DIR/run.json`` says whether the last run ended cleanly (SIGTERM, `--max-events`,
idle) and its batch size. A run that did not (kill -9, OOM, power loss) had committed
offsets past the snapshot and possibly a batch in flight: the next run rebuilds the state
from the snapshot's offsets up to the committed ones without producing those decisions
again, and marks the decisions of the batch that may have been in flight as redeliveries
(see `riskengine.stream.kafka`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from riskengine.engine import Engine
from riskengine.files import write_json_atomic
from riskengine.stream.base import StreamError

__all__ = ["Checkpoint", "PreviousRun"]

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot.pkl"
OFFSETS = "offsets.json"
RUN = "run.json"


@dataclass(frozen=True)
class PreviousRun:
    """How the last run on this state folder ended."""

    clean: bool
    batch_size: int


class Checkpoint:
    """Reads and writes the checkpoint in `folder` (created when first written)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.snapshot_path = folder / SNAPSHOT
        self.offsets_path = folder / OFFSETS
        self.run_path = folder / RUN
        self._batch_size = 0

    def begin(self, batch_size: int) -> PreviousRun | None:
        """Mark a run as started (not clean until `end_cleanly`); return how the previous
        one ended (None: no previous run, or one from before this file existed)."""
        previous = None
        try:
            raw = json.loads(self.run_path.read_text(encoding="utf-8"))
            previous = PreviousRun(bool(raw["clean"]), int(raw["batch_size"]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StreamError(f"cannot read {self.run_path}: {exc}; remove the state folder "
                              "to start from the committed offsets") from None
        self.folder.mkdir(parents=True, exist_ok=True)
        # the in-flight batch of an earlier unclean run still bounds what may be repeated
        self._batch_size = max(batch_size, previous.batch_size if previous else 0)
        write_json_atomic(self.run_path, {"clean": False, "batch_size": self._batch_size})
        return previous

    def end_cleanly(self) -> None:
        """Record that the run stopped cleanly after its last checkpoint."""
        write_json_atomic(self.run_path, {"clean": True, "batch_size": self._batch_size})

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
        write_json_atomic(self.offsets_path, {f"{topic}:{partition}": offset
                                              for (topic, partition), offset
                                              in sorted(offsets.items())})
        return self.snapshot_path
