"""The seed's Flink risk engine, transcribed to plain in-process Python.

The seed (a streaming-systems course) computes its three features like this:

1. ``EventSplitFunction``: each event gets an event id and is split into one "shadow" for
   the event itself and one per feature key (``pay_account.history``,
   ``amount#rcv_account.history``, ``rcv_account#pay_account.history``), each holding
   the timestamp, the key name, the key value (``target#<value of the condition
   field>.history``), the event id and the fields the key needs.
2. ``KeyEnrichFunction``: the keyed state of each key value is the list of that key's last
   100 shadows; the new shadow is appended, the oldest dropped beyond 100, and the list is
   attached to a copy of the shadow as ``HISTORY``.
3. ``FeatureEnrichFunction``: every feature of the shadow's key rescans the whole history
   and computes count / sum / count_distinct over the window.
4. ``FeatureReduceFunction``: shadows are joined back by event id until all features are
   in; ``RuleBasedModeling`` applies ``count > 5 and sum > 5000 and count_distinct <= 2``.

Here the keyed streams are dicts and the operators run one after another in one process,
which is the fair single-core equivalent of the Flink job:

- shadows are dicts (the seed passes parsed JSON objects between operators, not strings);
- the history is a ``deque(maxlen=100)``, the idiomatic Python form of append-and-drop;
- DSL parsing, key names and the feature lookup per key are prepared once (the seed's own
  comments recommend a map over its per-shadow loop);
- the seed does not show ``doCount``/``doSum``/``doCountDistinct``; they use the same window
  as riskengine, ``(t - 1h, t]`` around the current event's time, the current event
  included, null targets skipped by sum and count_distinct. The only difference left is
  the seed's: history is truncated to the last 100 events per key. Sums are floats, as
  the seed's doubles are.
- the event's own ``event_id`` is used when present (a random one otherwise), as
  riskengine does.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

SEED_FEATURES = (
    "count(pay_account.history,1h)",
    "sum(amount#rcv_account.history,1h)",
    "count_distinct(rcv_account#pay_account.history,1h)",
)
HISTORY_LIMIT = 100
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

JSON = dict[str, Any]


def parse_dsl(dsl: str) -> tuple[str, str, str]:
    """Split ``func(key,window)`` into its three parts, like the seed's ``parseDSL``."""
    parts = [p.strip() for p in re.split(r"[(,)]", dsl) if p.strip()]
    return parts[0], parts[1], parts[2]


def parse_window(text: str) -> int:
    """``1h`` -> 3600000 (milliseconds)."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if m is None:
        raise ValueError(f"bad window {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def key_fields(key: str) -> tuple[str, str]:
    """``amount#rcv_account.history`` -> (target, condition); no ``#``: both the same."""
    if not key.endswith(".history"):
        raise ValueError("unsupported key type")
    splits = key.removesuffix(".history").split("#")
    if len(splits) == 1:
        return splits[0], splits[0]
    if len(splits) == 2:
        return splits[0], splits[1]
    raise ValueError("unsupported key type")


def do_count(history: Iterable[JSON], target: str, window: int, now: int) -> int:
    lo = now - window
    return sum(1 for x in history if lo < x["timestamp"] <= now)


def do_sum(history: Iterable[JSON], target: str, window: int, now: int) -> float:
    lo = now - window
    total = 0.0
    for x in history:
        if lo < x["timestamp"] <= now:
            v = x.get(target)
            if v is not None:
                total += v
    return total


def do_count_distinct(history: Iterable[JSON], target: str, window: int, now: int) -> int:
    lo = now - window
    return len({x[target] for x in history
                if lo < x["timestamp"] <= now and x.get(target) is not None})


FUNCTIONS = {"count": do_count, "sum": do_sum, "count_distinct": do_count_distinct}


class SeedPipeline:
    """The seed's split -> keyed history -> features -> join -> rule, one event at a time."""

    def __init__(self, features: Iterable[str] = SEED_FEATURES,
                 history_limit: int = HISTORY_LIMIT) -> None:
        parsed = [parse_dsl(f) for f in features]
        self.feature_count = len(parsed)
        self.history_limit = history_limit
        self.keys: list[str] = sorted({key for _, key, _ in parsed})
        self.key_parts = {key: key_fields(key) for key in self.keys}
        self.key_names = {key: sorted(set(self.key_parts[key])) for key in self.keys}
        self.features_by_key: dict[str, list[tuple[str, Any, str, int]]] = {
            key: [] for key in self.keys}
        for func, key, window in parsed:
            name = f"{func}({key},{window})"
            self.features_by_key[key].append(
                (name, FUNCTIONS[func], self.key_parts[key][0], parse_window(window)))
        self.state: dict[str, deque[JSON]] = {}
        self.merged: dict[str, JSON] = {}

    def split(self, value: JSON) -> list[JSON]:
        event_id = value.get("event_id") or uuid.uuid4().hex
        timestamp = value["timestamp"]
        event = {"KEY_NAME": "event", "KEY_VALUE": event_id, "EVENT_ID": event_id}
        event.update(value)
        out = [event]
        for key in self.keys:
            target, on = self.key_parts[key]
            shadow = {
                "timestamp": timestamp,
                "KEY_NAME": key,
                "KEY_VALUE": f"{target}#{value.get(on)}.history",
                "EVENT_ID": event_id,
            }
            for f in self.key_names[key]:
                shadow[f] = value.get(f)
            out.append(shadow)
        return out

    def key_enrich(self, event: JSON) -> JSON:
        if event["KEY_NAME"] == "event":
            return event
        history = self.state.get(event["KEY_VALUE"])
        if history is None:
            history = self.state[event["KEY_VALUE"]] = deque(maxlen=self.history_limit)
        history.append(event)
        enriched = dict(event)
        enriched["HISTORY"] = history
        return enriched

    def feature_enrich(self, value: JSON) -> JSON:
        key_name = value["KEY_NAME"]
        if key_name == "event":
            return value
        history = value["HISTORY"]
        now = value["timestamp"]
        features = value.setdefault("features", {})
        for name, function, target, window in self.features_by_key[key_name]:
            features[name] = function(history, target, window, now)
        return value

    def feature_reduce(self, value: JSON) -> JSON | None:
        event_id = value["EVENT_ID"]
        merged = self.merged.get(event_id)
        if merged is None:
            merged = self.merged[event_id] = {}
        if value["KEY_NAME"] == "event":
            merged["event"] = value
        else:
            merged.setdefault("features", {}).update(value.get("features", {}))
        if "event" in merged and len(merged.get("features", ())) == self.feature_count:
            del self.merged[event_id]
            return merged
        return None

    @staticmethod
    def rule_based_modeling(value: JSON) -> JSON:
        f = value["features"]
        value["isAnomaly"] = (
            f["count(pay_account.history,1h)"] > 5
            and f["sum(amount#rcv_account.history,1h)"] > 5000
            and f["count_distinct(rcv_account#pay_account.history,1h)"] <= 2
        )
        return value

    def process(self, event: JSON) -> JSON | None:
        """Run one event through every operator; return the joined, scored result."""
        result = None
        for shadow in self.split(event):
            joined = self.feature_reduce(self.feature_enrich(self.key_enrich(shadow)))
            if joined is not None:
                result = self.rule_based_modeling(joined)
        return result


def truncated_events(events: Iterable[JSON], features: Iterable[str] = SEED_FEATURES,
                     history_limit: int = HISTORY_LIMIT) -> list[bool]:
    """For each event: did the 100-event limit drop something inside its window on a key?

    Tracks, per key value, the latest timestamp ever dropped from the history; the event's
    features can be wrong exactly when such a dropped event lies in ``(t - W, t]``.
    """
    pipeline = SeedPipeline(features, history_limit)
    windows = {key: max(w for *_, w in feats) for key, feats in pipeline.features_by_key.items()}
    recent: dict[str, deque[int]] = {}
    dropped: dict[str, int] = {}
    flags = []
    for e in events:
        t = e["timestamp"]
        hit = False
        for key in pipeline.keys:
            target, on = pipeline.key_parts[key]
            kv = f"{target}#{e.get(on)}.history"
            times = recent.get(kv)
            if times is None:
                times = recent[kv] = deque()
            times.append(t)
            if len(times) > history_limit:
                old = times.popleft()
                if old > dropped.get(kv, old - 1):
                    dropped[kv] = old
            if kv in dropped and t - windows[key] < dropped[kv] <= t:
                hit = True
        flags.append(hit)
    return flags
