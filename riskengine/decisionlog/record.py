"""One logged decision, as appended and as stored, and the error every backend raises."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from riskengine.decisionlog import codec
from riskengine.exceptions import RiskEngineError

if TYPE_CHECKING:
    from riskengine.decision import Decision

__all__ = ["DECISIONS", "INT64", "DecisionLogError", "LogRecord", "Row", "now_ms"]

DECISIONS = ("accept", "review", "reject")
INT64 = 1 << 63

# lsn, event_id, scene, decision, score, event_time, logged_at, ruleset_version, late,
# degraded, latency_ms, hits, shadow_hits, document, event: the column order of both schemas.
Row = tuple[int, str, str, str, float, int, int, str, bool, bool, float, str, str, str, str]


class DecisionLogError(RiskEngineError):
    """The decision log cannot be opened, written or read; the message names it (masked)."""


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def _check_int64(value: object, name: str) -> None:
    if type(value) is not int or not -INT64 <= value < INT64:
        raise DecisionLogError(f"log record: {name} must be a 64-bit integer, not {value!r:.40}")


def _check_number(value: object, name: str) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value)):
        raise DecisionLogError(f"log record: {name} must be a finite number, not {value!r:.40}")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One logged decision: the queryable columns, the full decision and the event.

    `document` is the decision as `Decision.to_dict()` gives it; `event` is the normalised
    event the engine decided, kept so state can be rebuilt by replaying the log.
    """

    lsn: int
    event_id: str
    scene: str
    decision: str
    score: float
    timestamp: int
    logged_at: int
    ruleset_version: str
    late: bool
    degraded: bool
    latency_ms: float
    hits: tuple[str, ...]
    shadow_hits: tuple[str, ...]
    document: Mapping[str, Any] = field(repr=False)
    event: Mapping[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        _check_int64(self.lsn, "lsn")
        if self.lsn < 0:
            raise DecisionLogError(f"log record: lsn must not be negative, not {self.lsn}")
        _check_int64(self.timestamp, "timestamp")
        _check_int64(self.logged_at, "logged_at")
        _check_number(self.score, "score")
        _check_number(self.latency_ms, "latency_ms")
        if self.decision not in DECISIONS:
            raise DecisionLogError(f"log record: decision must be one of {', '.join(DECISIONS)}"
                                   f", not {self.decision!r:.40}")
        for name in ("event_id", "scene", "ruleset_version"):
            if not isinstance(getattr(self, name), str):
                raise DecisionLogError(f"log record: {name} must be a string")
        for name in ("document", "event"):
            if not isinstance(getattr(self, name), Mapping):
                raise DecisionLogError(f"log record: {name} must be a mapping")

    @classmethod
    def from_decision(cls, decision: Decision, event: Mapping[str, Any], *,
                      logged_at: int | None = None) -> LogRecord:
        """The record of `decision`, made for `event` (the normalised event)."""
        return cls(
            lsn=decision.lsn, event_id=decision.event_id, scene=decision.scene,
            decision=decision.decision, score=decision.score, timestamp=decision.timestamp,
            logged_at=now_ms() if logged_at is None else logged_at,
            ruleset_version=decision.ruleset_version, late=decision.late,
            degraded=decision.degraded, latency_ms=decision.latency_ms,
            hits=tuple(decision.hit_ids),
            shadow_hits=tuple(h.rule_id for h in decision.shadow_hits),
            document=decision.to_dict(), event=event)

    def to_row(self) -> Row:
        """Column values as both backends store them (strings made storable, JSON as text)."""
        return (self.lsn, codec.encode_text(self.event_id), codec.encode_text(self.scene),
                self.decision, float(self.score), self.timestamp, self.logged_at,
                codec.encode_text(self.ruleset_version), bool(self.late), bool(self.degraded),
                float(self.latency_ms), codec.dumps(list(self.hits)),
                codec.dumps(list(self.shadow_hits)), codec.dumps(dict(self.document)),
                codec.dumps(dict(self.event)))
