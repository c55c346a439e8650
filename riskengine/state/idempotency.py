"""Remembered event ids: the idempotency records of one scene in one clock domain.

docs/semantics.md, Idempotency: an id already accepted returns the stored decision while
the first decision with that id is remembered — while its event time is above
`G − L − Wmax(scene)` (the horizon) and at most `idempotency_max` ids are held, the oldest
(in arrival order) forgotten first. The in-memory state and the Spark runner's ordered
pass both keep their ids here, so both forget exactly the same ids at the same events.

A record is any tuple whose first item is the event time; the caller decides the rest.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["FORGET_EVERY", "RememberedIds"]

FORGET_EVERY = 64
"""Ids past the horizon are dropped every this many remembered decisions (memory only:
`fresh` decides by the horizon itself); the cap is applied at once."""

Record = tuple[Any, ...]


class RememberedIds:
    """Event id → record, in arrival order, forgotten by the horizon and the cap."""

    __slots__ = ("countdown", "horizon_ms", "max_ids", "order", "records")

    def __init__(self, horizon_ms: int, max_ids: int) -> None:
        self.horizon_ms = horizon_ms
        self.max_ids = max_ids
        self.records: dict[str, Record] = {}
        self.order: deque[str] = deque()
        self.countdown = FORGET_EVERY

    def __len__(self) -> int:
        return len(self.records)

    def fresh(self, record: Record, clock: int) -> bool:
        """Whether `record` still answers for its id at scene clock `clock`."""
        return bool(record[0] > clock - self.horizon_ms)

    def remember(self, event_id: str, record: Record, known: bool, clock: int) -> None:
        """Keep `record` for `event_id`; `known`: the id is held already (an entry past
        its horizon, decided again); `clock`: the scene clock after the event."""
        records = self.records
        records[event_id] = record
        if not known:
            self.order.append(event_id)
            if len(records) > self.max_ids:
                self.cap()
        self.countdown -= 1
        if not self.countdown:
            self.forget_old(clock)

    def forget_old(self, clock: int) -> None:
        """Drop ids whose event left the horizon (arrival order), and any over the cap."""
        self.countdown = FORGET_EVERY
        order = self.order
        records = self.records
        horizon = clock - self.horizon_ms
        while order:
            event_id = order[0]
            record = records.get(event_id)
            if record is not None and record[0] > horizon:
                break
            order.popleft()
            if record is not None:
                del records[event_id]
        self.cap()

    def cap(self) -> None:
        records = self.records
        order = self.order
        while len(records) > self.max_ids:
            records.pop(order.popleft(), None)

    def dump(self) -> list[tuple[str, Record]]:
        """The held ids with their records, in arrival order."""
        records = self.records
        return [(i, records[i]) for i in self.order if i in records]

    def load(self, rows: list[tuple[str, Record]]) -> None:
        self.records.clear()
        self.order.clear()
        for event_id, record in rows:
            self.records[event_id] = record
            self.order.append(event_id)
