"""Labels: what an event turned out to be (``fraud``, ``legit``, ``chargeback``, …).

A label names an event by its `event_id` and is stored beside the decisions, in the
decision log's `labels` table, whether the event's decision is logged yet or not: the
two are joined when read, so a label that arrives before its decision is matched as soon
as the decision is there.

One label per event: a newer label (a later `time`; on a tie, the one received last)
replaces the older one, and an older one that arrives late is ignored. The log keeps the
latest only.

Fields (`parse_label` validates what a client or a file gives):

- ``event_id``: 1..256 characters, as in events;
- ``label``: 1..64 letters, digits and ``_ - .``;
- ``time``: when the event was found to be so, epoch ms or ISO-8601 with offset (default:
  when it was received);
- ``source``: who said so (a chargeback feed, an analyst), at most 200 characters;
- ``received_at``: when the log took it (epoch ms); purging drops labels received before
  the decisions' retention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from riskengine.events import parse_timestamp, parse_timestamp_text
from riskengine.exceptions import EventValidationError, RiskEngineError

__all__ = ["LABEL_FIELDS", "MAX_EVENT_ID", "MAX_SOURCE", "Label", "LabelError", "latest_labels",
           "parse_label"]

LABEL_FIELDS = ("event_id", "label", "time", "source")
MAX_EVENT_ID = 256
MAX_SOURCE = 200
_LABEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


class LabelError(RiskEngineError):
    """A label that cannot be stored; `field` names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Label:
    """One stored label (see the module docstring)."""

    event_id: str
    label: str
    time: int
    source: str
    received_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "label": self.label, "time": self.time,
                "source": self.source, "received_at": self.received_at}

    def newer_than(self, other: Label) -> bool:
        """Whether this label replaces `other` (a later time; on a tie, received later)."""
        return (self.time, self.received_at) >= (other.time, other.received_at)


def parse_label(raw: object, *, received_at: int) -> Label:
    """A validated `Label` from a mapping with event_id, label and optional time, source.

    Raises `LabelError` naming the field. A time given as a string of digits (a CSV cell)
    is epoch ms.

    >>> parse_label({"event_id": "e1", "label": "fraud"}, received_at=5).time
    5
    >>> parse_label({"event_id": "e1", "label": "no way"}, received_at=5).label
    Traceback (most recent call last):
    ...
    riskengine.decisionlog.labels.LabelError: label must be 1..64 letters, ...
    """
    if not isinstance(raw, Mapping):
        raise LabelError(f"a label is an object with {', '.join(LABEL_FIELDS)}, not "
                         f"{type(raw).__name__}")
    unknown = sorted(str(key)[:40] for key in raw if key not in LABEL_FIELDS)
    if unknown:
        raise LabelError(f"unknown field(s) {', '.join(map(repr, unknown))}; a label has "
                         f"{', '.join(LABEL_FIELDS)}", field=unknown[0])
    event_id = raw.get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_EVENT_ID:
        raise LabelError(f"event_id must be a string of 1..{MAX_EVENT_ID} characters",
                         field="event_id")
    label = raw.get("label")
    if type(label) is not str or not _LABEL_RE.match(label):
        raise LabelError(f"label must be 1..64 letters, digits and _ - . (not {label!r:.80})",
                         field="label")
    source = raw.get("source")
    if source is None:
        source = ""
    if type(source) is not str or len(source) > MAX_SOURCE:
        raise LabelError(f"source must be a string of at most {MAX_SOURCE} characters",
                         field="source")
    return Label(event_id, label, _label_time(raw.get("time"), received_at), source,
                 received_at)


def _label_time(value: object, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return parse_timestamp_text(value) if isinstance(value, str) else parse_timestamp(value)
    except EventValidationError as exc:
        raise LabelError(str(exc).replace("timestamp", "time"), field="time") from None


def latest_labels(labels: Iterable[Label]) -> list[Label]:
    """One label per event id, the newest (`Label.newer_than`), in first-seen order."""
    kept: dict[str, Label] = {}
    for label in labels:
        held = kept.get(label.event_id)
        if held is None or label.newer_than(held):
            kept[label.event_id] = label
    return list(kept.values())
