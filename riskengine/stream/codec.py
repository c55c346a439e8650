"""Bytes in, bytes out: input messages to events, decisions and dead letters to messages.

Decisions are the engine's ``Decision.to_dict()`` plus ``source``: where the event was
read (Kafka: topic, partition and offset; Redis Streams: stream and entry id), and
``redelivery``: true when the event id had been decided before and the decision is the
remembered one (a re-read after a restart), so consumers can drop it. Dead
letters keep the original key and value bytes untouched; the error travels in headers,
as Kafka Connect's dead-letter queues do.

>>> decode_event(b'{"event_id": "e1", "amount": 5}')
{'event_id': 'e1', 'amount': 5}
>>> decode_event(b'[1]')
Traceback (most recent call last):
...
riskengine.stream.base.PoisonMessage: the message is JSON but not an object (a list)
"""

from __future__ import annotations

from typing import Any

import orjson

from riskengine.decision import Decision
from riskengine.stream.base import PoisonMessage

__all__ = ["ERROR_HEADERS", "dead_letter_headers", "decision_message", "decode_event"]

ERROR_HEADERS = ("riskengine.error.kind", "riskengine.error.message",
                 "riskengine.error.field", "riskengine.source.topic",
                 "riskengine.source.partition", "riskengine.source.offset")
"""Headers of a dead letter, in this order; `field` is empty when no field is to blame."""

_KINDS = {dict: "an object", list: "a list", str: "a string", int: "a number",
          float: "a number", bool: "a boolean", type(None): "null"}


def decode_event(value: bytes | None) -> dict[str, Any]:
    """The event in a message value: one JSON object, UTF-8. `PoisonMessage` otherwise."""
    if value is None:
        raise PoisonMessage("undecodable", "the message has no value (a tombstone)")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage("undecodable", f"the message is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise PoisonMessage("undecodable", "the message is JSON but not an object "
                                           f"({_KINDS.get(type(event), 'a value')})")
    return event


def decision_message(decision: Decision, source: dict[str, Any],
                     redelivery: bool = False) -> bytes:
    """The JSON value produced to the sink for `decision`: `source` is where the event
    was read (Kafka: topic, partition, offset; Redis Streams: stream, id); `redelivery`
    marks a decision that may repeat one produced before."""
    fields = decision.json_fields()
    fields["source"] = source
    fields["redelivery"] = redelivery
    return orjson.dumps(fields)


def dead_letter_headers(error: PoisonMessage, topic: str, partition: int,
                        offset: int) -> list[tuple[str, bytes]]:
    """Headers naming what was wrong with the message and where it came from."""
    values = (error.kind, str(error)[:2000], error.field or "", topic, str(partition),
              str(offset))
    return [(name, value.encode()) for name, value in zip(ERROR_HEADERS, values, strict=True)]
