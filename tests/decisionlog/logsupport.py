"""Records for the decision log tests."""

from __future__ import annotations

from typing import Any

from riskengine.decisionlog import DecisionLog, LogRecord

BASE_TS = 1_700_000_000_000


def record(lsn: int, **overrides: Any) -> LogRecord:
    """A plausible record; the decision document carries the same values as the columns."""
    fields: dict[str, Any] = {
        "lsn": lsn, "event_id": f"ev-{lsn}", "scene": "transfer", "decision": "accept",
        "score": 0, "timestamp": BASE_TS + lsn * 1000, "logged_at": BASE_TS + lsn,
        "ruleset_version": "v1", "late": False, "degraded": False, "latency_ms": 0.25,
        "hits": (), "shadow_hits": ()}
    fields.update(overrides)
    event = fields.pop("event", None)
    if event is None:
        event = {"event_id": fields["event_id"], "timestamp": fields["timestamp"],
                 "pay_account": f"A-{lsn % 7}", "rcv_account": "M-1", "amount": 10.0 * lsn}
    document = fields.pop("document", None)
    if document is None:
        document = {k: fields[k] for k in ("event_id", "scene", "decision", "score", "late",
                                           "degraded", "latency_ms", "ruleset_version", "lsn",
                                           "timestamp")}
        document["hits"] = [{"rule_id": r, "reason": "", "score": 0, "action": None}
                            for r in fields["hits"]]
        document["features"] = {"count(pay_account.history,1h)": lsn}
    return LogRecord(document=document, event=event, **fields)


def write_all(log: DecisionLog, records: list[LogRecord]) -> None:
    """Append and wait for every commit; a failed commit fails the test."""
    futures = [log.append(r) for r in records]
    for future in futures:
        future.result(timeout=60)
