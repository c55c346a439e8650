"""Event streams for the oracle tests, and the engine-vs-oracle comparison.

`random_stream` makes a seeded, reproducible stream that leans on every corner of
docs/semantics.md: hot keys, composite and null keys, same-millisecond ties, events
exactly one window apart, disorder inside and beyond the allowed lateness, duplicate ids
(same and different content, fresh and long expired), null targets, awkward amounts and
idle gaps long enough for keys to be forgotten.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tests.oracle import Oracle, OracleResult

BASE_TS = 1_700_000_000_000
SEC, MIN, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000

# The feature set of the random streams: all nine functions on `history` with several
# windows, a `where` filter, composite keys, a second key field that is often null, and
# tiled `window` features (2d, hop 1h; 1d, default hop).
STREAM_FEATURES: list[Any] = [
    "count(acct.history,1s)",
    "count(acct.history,1m)",
    "count(acct.history,1h)",
    "sum(amount#acct.history,1s)",
    "sum(amount#acct.history,1m)",
    "sum(amount#acct.history,1h)",
    "avg(amount#acct.history,1m)",
    "avg(amount#acct.history,1h)",
    "min(amount#acct.history,1m)",
    "max(amount#acct.history,1h)",
    "stddev(amount#acct.history,1m)",
    "stddev(amount#acct.history,1h)",
    "count_distinct(merchant#acct.history,1h)",
    "count_distinct(amount#acct.history,1m)",
    "first(amount#acct.history,1m)",
    "last(amount#acct.history,1h)",
    "first(merchant#acct.history,1h)",
    "last(merchant#acct.history,1m)",
    {"name": "web_sum_1h", "func": "sum", "target": "amount", "by": ["acct"],
     "window": "1h", "where": "channel == 'web'"},
    {"name": "web_count_1m", "func": "count", "by": ["acct"], "window": "1m",
     "where": "channel == 'web'"},
    "sum(amount#acct+merchant.history,1m)",
    {"func": "count", "target": "amount", "by": ["acct", "merchant"], "window": "1h"},
    "count(dev.history,1m)",
    "count_distinct(acct#dev.history,1h)",
    "stddev(amount#dev.history,1m)",
    {"name": "m_count_2d", "func": "count", "by": ["merchant"], "window": "2d",
     "kind": "window", "hop": "1h"},
    {"name": "m_sum_2d", "func": "sum", "target": "amount", "by": ["merchant"],
     "window": "2d", "kind": "window", "hop": "1h"},
    "count_distinct(acct#merchant.window,1d)",
]
STREAM_LATENESS = "5m"
STREAM_LATENESS_MS = 5 * MIN

HOT_ACCOUNTS = [f"A{i}" for i in range(4)]
COLD_ACCOUNTS = [f"C{i}" for i in range(25)]
MERCHANTS = [f"m{i}" for i in range(8)] + [f"mc{i}" for i in range(8)]
DEVICES = [f"d{i}" for i in range(3)]
AMOUNTS: list[Any] = [
    0, 1, 10, 1000, -5, 0.1, 0.2, 0.3, 1e-7, 5e-7, 1.5e-6, 2.5e-6, 123456.789, -0.1,
    -3.5, 99.99, 1.0000005, 1.0, 2.5, 1e9 + 0.5, 33.333333333, None,
]


def scene_config(features: Sequence[Any], lateness: str, *, rules: Sequence[Any] = (),
                 policy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A one-scene project config (scene `s`, no schema)."""
    return {"scenes": {"s": {"lateness": lateness, "features": copy.deepcopy(list(features)),
                             "rules": copy.deepcopy(list(rules)),
                             "policy": dict(policy or {})}}}


def _amount(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.6:
        return rng.choice(AMOUNTS)
    if r < 0.8:
        return round(rng.uniform(-2000, 2000), rng.choice([0, 2, 3, 6, 9]))
    if r < 0.9:
        return rng.randint(-50, 5000)
    return rng.uniform(-1, 1) * 10 ** rng.randint(-8, 6)   # arbitrary digits


def _maybe(rng: random.Random, ev: dict[str, Any], name: str, value: Any,
           p_null: float, p_absent: float) -> None:
    r = rng.random()
    if r < p_absent:
        return
    ev[name] = None if r < p_absent + p_null else value


def random_stream(seed: int, n: int, *, lateness_ms: int = STREAM_LATENESS_MS
                  ) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    now = BASE_TS
    burst = 0            # events left in a burst on one hot account
    burst_acct = HOT_ACCOUNTS[0]
    while len(events) < n:
        i = len(events)
        # -- duplicates: an id seen before, with the same or with different content
        if events and rng.random() < 0.05:
            old = rng.choice(events[-30:]) if rng.random() < 0.7 else rng.choice(events)
            if rng.random() < 0.5:
                events.append(copy.deepcopy(old))
                continue
            dup_id = old["event_id"]
        else:
            dup_id = f"e{seed}-{i}"

        # -- time
        if burst == 0 and rng.random() < 0.02:
            burst = rng.randint(10, 80)
            burst_acct = rng.choice(HOT_ACCOUNTS)
        r = rng.random()
        if burst:                                    # a burst: steps of 0..2s
            burst -= 1
            now += rng.choice([0, 0, 1, 10, 500, 999, SEC, 2 * SEC])
            t = now
        elif r < 0.15 and events:                    # same millisecond as the previous one
            t = events[-1]["timestamp"]
        elif r < 0.40:                               # short steps, some exactly 1s / 1m
            now += rng.choice([0, 1, 7, 250, 999, SEC, 1001, 5_000, 30_000, MIN - 1, MIN,
                               MIN + 1])
            t = now
        elif r < 0.50 and events:                    # exactly one window after an event
            t = rng.choice(events[-40:])["timestamp"] + rng.choice([SEC, MIN, HOUR])
            now = max(now, t)
        elif r < 0.62:                               # disorder inside the lateness
            t = now - rng.randint(0, lateness_ms)
        elif r < 0.66:                               # beyond the lateness: late on hot keys
            t = now - rng.randint(lateness_ms + 1, lateness_ms + 2 * HOUR)
        elif r < 0.6625:                             # long idle gap: everything goes idle
            now += rng.choice([HOUR + 6 * MIN, 3 * HOUR, 2 * DAY + HOUR, 3 * DAY])
            t = now
        else:                                        # ordinary forward steps
            now += rng.randint(0, 90 * SEC)
            t = now

        ev: dict[str, Any] = {"event_id": dup_id, "timestamp": t}
        if burst:
            acct = burst_acct
        elif rng.random() < 0.7:
            acct = rng.choice(HOT_ACCOUNTS)
        else:
            acct = rng.choice(COLD_ACCOUNTS)
        _maybe(rng, ev, "acct", acct, p_null=0.02, p_absent=0.03)
        _maybe(rng, ev, "merchant",
               rng.choice(MERCHANTS[:8]) if rng.random() < 0.8 else rng.choice(MERCHANTS),
               p_null=0.04, p_absent=0.02)
        _maybe(rng, ev, "dev", rng.choice(DEVICES), p_null=0.25, p_absent=0.1)
        ev["channel"] = rng.choice(["web", "app", "pos"])
        _maybe(rng, ev, "amount", _amount(rng), p_null=0.0, p_absent=0.05)
        events.append(ev)
    return events


# --------------------------------------------------------------------------- comparing

def _fmt_event(i: int, ev: Mapping[str, Any]) -> str:
    return f"event #{i} {dict(ev)!r}"


def mismatches(i: int, ev: Mapping[str, Any], expected: OracleResult, decision: Any
               ) -> list[tuple[str, str]]:
    """(feature or 'late', message) for every difference between engine and oracle."""
    out = []
    got = dict(decision.features)
    want = expected.features
    context = (f"(late: engine={decision.late!r} oracle={expected.late!r}, "
               f"duplicate={expected.duplicate})")
    for name in sorted(set(got) | set(want)):
        if name not in got:
            out.append((name, f"{_fmt_event(i, ev)}: feature {name!r} missing from the "
                              f"engine's decision (oracle={want[name]!r})"))
        elif name not in want:
            out.append((name, f"{_fmt_event(i, ev)}: engine returned unknown feature "
                              f"{name!r}={got[name]!r}"))
        else:
            g, w = got[name], want[name]
            if (g is None) != (w is None) or g != w or isinstance(g, bool) != isinstance(w, bool):
                out.append((name, f"{_fmt_event(i, ev)}: feature {name!r}: engine={g!r} "
                                  f"oracle={w!r} {context}"))
    if decision.late is not expected.late:
        out.append(("late", f"{_fmt_event(i, ev)}: late flag: engine={decision.late!r} "
                            f"oracle={expected.late!r}"))
    return out


def assert_same(i: int, ev: Mapping[str, Any], expected: OracleResult, decision: Any) -> None:
    """Exact equality of the features dict and the late flag, with a readable message."""
    found = mismatches(i, ev, expected, decision)
    if found:
        raise AssertionError(found[0][1])


def run_against_oracle(engine: Any, scene: str, events: Iterable[Mapping[str, Any]],
                       oracle: Oracle, *, start: int = 0) -> list[Any]:
    """Feed both, compare after every event; returns the engine's decisions."""
    decisions = []
    for i, ev in enumerate(events, start=start):
        expected = oracle.feed(copy.deepcopy(dict(ev)))
        d = engine.evaluate(scene, copy.deepcopy(dict(ev)))
        assert_same(i, ev, expected, d)
        decisions.append(d)
    return decisions


def decision_view(d: Any) -> dict[str, Any]:
    """What a restart must not change: features, decision, score, hits, late."""
    out = dict(d.to_dict())
    for volatile in ("latency_ms", "degraded_reason", "decided_at", "trace_id"):
        out.pop(volatile, None)
    return out


def oracle_coverage(oracle: Oracle, results: Sequence[OracleResult]) -> dict[str, int]:
    """How much of the contract a stream exercised (to keep the generator honest)."""
    return {
        "events": len(results),
        "late": sum(r.late and not r.duplicate for r in results),
        "duplicates": sum(r.duplicate for r in results),
        "idle_key_touches": oracle.idle_touches,
        "re_accepted_ids": len(oracle.records) - len({x.event_id for x in oracle.records}),
    }
