"""One logged decision, as appended and as stored, and the error every backend raises."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import isfinite
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
            or not isfinite(value)):
        raise DecisionLogError(f"log record: {name} must be a finite number, not {value!r:.40}")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One logged decision: the queryable columns, the full decision and the event.

    `document` is the decision as `Decision.to_dict()` gives it, or that dict already
    encoded as the log stores it (`codec.dumps`, or `codec.plain_text` of its orjson
    encoding: the service encodes each decision once, for the response and the log);
    `event` is the normalised event the engine decided, kept so state can be rebuilt by
    replaying the log.
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
    document: Mapping[str, Any] | str = field(repr=False)
    event: Mapping[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        if (type(self.lsn) is int and 0 <= self.lsn < INT64  # the usual record: plain types
                and type(self.timestamp) is int and -INT64 <= self.timestamp < INT64
                and type(self.logged_at) is int and -INT64 <= self.logged_at < INT64
                and type(self.score) is float and isfinite(self.score)
                and type(self.latency_ms) is float and isfinite(self.latency_ms)
                and self.decision in DECISIONS and type(self.event_id) is str
                and type(self.scene) is str and type(self.ruleset_version) is str
                and type(self.document) in (str, dict) and type(self.event) is dict):
            return
        self._check()

    def _check(self) -> None:
        """Each field checked in turn, the first wrong one named (`DecisionLogError`)."""
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
        if not isinstance(self.document, Mapping | str):
            raise DecisionLogError("log record: document must be a mapping or its JSON text")
        if not isinstance(self.event, Mapping):
            raise DecisionLogError("log record: event must be a mapping")

    @classmethod
    def from_decision(cls, decision: Decision, event: Mapping[str, Any], *,
                      logged_at: int | None = None,
                      document: Mapping[str, Any] | str | None = None) -> LogRecord:
        """The record of `decision`, made for `event` (the normalised event); `document`
        is `decision.to_dict()` (made here when not given) or its stored text."""
        return cls(
            decision.lsn, decision.event_id, decision.scene, decision.decision,
            decision.score, decision.timestamp, now_ms() if logged_at is None else logged_at,
            decision.ruleset_version, decision.late, decision.degraded, decision.latency_ms,
            tuple([h.rule_id for h in decision.hits]),
            tuple([h.rule_id for h in decision.shadow_hits]),
            decision.to_dict() if document is None else document, event)

    def to_row(self) -> Row:
        """Column values as both backends store them (strings made storable, JSON as text)."""
        document = self.document
        return (self.lsn, codec.encode_text(self.event_id), codec.encode_text(self.scene),
                self.decision, float(self.score), self.timestamp, self.logged_at,
                codec.encode_text(self.ruleset_version), bool(self.late), bool(self.degraded),
                float(self.latency_ms), _ids(self.hits), _ids(self.shadow_hits),
                document if isinstance(document, str) else codec.dumps(dict(document)),
                codec.dumps(dict(self.event)))


def _ids(ids: tuple[str, ...]) -> str:
    return codec.dumps(list(ids)) if ids else "[]"
