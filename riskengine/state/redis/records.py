"""Compact idempotency records: the decision of an event as Redis remembers it.

A record is ``<t>|<json array>`` under the event id's key (`RedisDecisionStore`): the
decision, score, hits and shadow hits (as ``[rule_id, reason, score, action]``), the
feature values in the scene's feature order, list hits, ruleset version, late, latency,
LSN, rule errors, an 8-hex tag of the feature names, and — when a challenger answered
(riskengine/experiment.py) or models scored the event — the arm, then the model versions
(name → version). The event id, scene and time are
the key's and the prefix's; `degraded` is always false (degraded decisions are never
remembered). The names of a tag are stored once per scene in ``<prefix>:names:{scene}``
(a hash tag → JSON list), so a record written under another feature list (a config
change) still decodes with its own names. A typical record is about 110 bytes, a fifth of
the decision's JSON document.

>>> from riskengine.rules.ruleset import Hit
>>> codec = DecisionRecords("transfer", ("n", "s"))
>>> d = Decision("e1", "transfer", "review", 40.0, (Hit("r1", "why", 40.0, None),), (),
...              {"n": 3, "s": 1.5}, (), "v1", False, False, 0.25, 7, 1000)
>>> from dataclasses import replace
>>> raw = b"1000|" + codec.encode(d)
>>> again = codec.decode(raw, "e1")  # the stored answer of a duplicate
>>> again.duplicate, replace(again, duplicate=False) == d
(True, True)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import orjson

from riskengine.decision import Decision
from riskengine.experiment import CHAMPION
from riskengine.rules.ruleset import Hit
from riskengine.state.redis.codec import RedisStateError

__all__ = ["DecisionRecords"]


def names_tag(names: Sequence[str]) -> str:
    return hashlib.blake2b("\x00".join(names).encode(), digest_size=4).hexdigest()


def _hits(hits: Sequence[Hit]) -> list[list[Any]]:
    return [[h.rule_id, h.reason, h.score, h.action] for h in hits]


class DecisionRecords:
    """Encodes and decodes one scene's records (see the module docstring). `client` (a
    Redis client) is needed only to register the names and to decode records written
    under other names."""

    def __init__(self, scene: str, names: Sequence[str], client: Any = None,
                 prefix: str = "re") -> None:
        self.scene = scene
        self.names = tuple(names)
        self.tag = names_tag(self.names)
        self.client = client
        self.key = f"{prefix}:names:{{{scene}}}"
        self._known: dict[str, tuple[str, ...]] = {self.tag: self.names}

    def register(self) -> None:
        """Store this scene's feature names under their tag (once; a round trip)."""
        self.client.hsetnx(self.key, self.tag, json.dumps(self.names))

    def encode(self, decision: Decision) -> bytes:
        features = decision.features
        record = [decision.decision, decision.score, _hits(decision.hits),
                  _hits(decision.shadow_hits), [features.get(n) for n in self.names],
                  decision.list_hits, decision.ruleset_version, decision.late,
                  decision.latency_ms, decision.lsn, decision.rule_errors, self.tag]
        if decision.arm != CHAMPION or decision.models:
            record.append(decision.arm)
        if decision.models:
            record.append(decision.models)
        try:
            return orjson.dumps(record)
        except TypeError:  # integers beyond 64 bits, lone surrogates
            return json.dumps(record, separators=(",", ":")).encode()

    def decode(self, raw: bytes, event_id: str) -> Decision:
        """The decision of a ``<t>|<record>`` value."""
        t, _, body = raw.partition(b"|")
        (action, score, hits, shadow, values, list_hits, version, late, latency, lsn,
         errors, tag, *scored_by) = json.loads(body)  # exact for big integers, unlike orjson
        names = self._known.get(tag) or self._names_of(tag)
        return Decision(event_id, self.scene, action, score,
                        tuple(Hit(*h) for h in hits), tuple(Hit(*h) for h in shadow),
                        dict(zip(names, values, strict=True)), tuple(list_hits), version,
                        late, False, latency, lsn, int(t), tuple(errors), True,
                        scored_by[0] if scored_by else CHAMPION,
                        models=scored_by[1] if len(scored_by) > 1 else {})

    def _names_of(self, tag: str) -> tuple[str, ...]:
        raw = None if self.client is None else self.client.hget(self.key, tag)
        if raw is None:
            raise RedisStateError(f"scene {self.scene!r}: a remembered decision names "
                                  f"feature list {tag}, which {self.key} does not hold")
        names = tuple(json.loads(raw))
        self._known[tag] = names
        return names
