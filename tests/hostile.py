"""Hostile event streams for the scene-clock contract (docs/semantics.md), with fixed seeds.

`hostile_stream(seed, n)` interleaves several sources, each with its own clock: most run
together, one lags (sometimes within the lateness, sometimes far beyond it, sometimes
exactly at the watermark), and keys go idle for longer than their horizon and come back
behind the scene clock — the shape where a per-key lateness test would have scored an
event on time over a partial window. It also sends exact watermark ties (`t = G − L`
and `t = G − L − 1`), late events on tiled windows, null keys, filtered events,
duplicates (same id, same or other content) and pattern steps.

The generator tracks the scene clock G the way the contract defines it, so it can aim
at the watermark; `HostileStats` says how often each shape came out (tests assert the
streams keep covering them).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from tests.streams import BASE_TS, HOUR, MIN, SEC

HOSTILE_SEEDS = (101, 202, 303)
"""The committed seeds: every runtime is checked on these streams."""

HOSTILE_LATENESS = "5m"
HOSTILE_LATENESS_MS = 5 * MIN

HOSTILE_FEATURES: list[Any] = [
    "count(acct.history,1h)",
    "count(acct.history,10m)",
    "sum(amount#acct.history,1h)",
    "avg(amount#acct.history,10m)",
    "max(amount#acct.history,1h)",
    "stddev(amount#acct.history,1h)",
    "count_distinct(rcv#acct.history,1h)",
    "first(rcv#acct.history,10m)",
    "last(amount#acct.history,1h)",
    "sum(amount#rcv.history,1h)",
    "count(rcv.history,10m)",
    {"name": "web_count_1h", "func": "count", "by": ["acct"], "window": "1h",
     "where": "channel == 'web'"},
    "count(acct+rcv.history,1h)",
    {"name": "rcv_tiled_6h", "func": "count", "by": ["rcv"], "window": "6h",
     "kind": "window", "hop": "1h"},
    {"name": "rcv_tiled_sum_2h", "func": "sum", "target": "amount", "by": ["rcv"],
     "window": "2h", "kind": "window", "hop": "30m"},
]

HOSTILE_PATTERNS: list[dict[str, Any]] = [
    {"name": "login_then_2_fails", "by": ["acct"], "within": "10m",
     "steps": ["kind == 'login'", {"when": "kind == 'fail'", "times": 2}]},
    {"name": "withdraw_unconfirmed", "by": ["acct"], "within": "15m",
     "first": "kind == 'withdraw'", "not_followed_by": "kind == 'confirm'"},
]

HOSTILE_RULES: list[dict[str, Any]] = [
    {"id": "busy", "when": 'features["count(acct.history,1h)"] > 4', "score": 40},
    {"id": "drain", "when": 'features["sum(amount#rcv.history,1h)"] > 3000', "score": 50},
    {"id": "takeover", "when": 'pattern("login_then_2_fails")', "action": "review"},
    {"id": "late_big", "when": "amount > 900", "score": 20, "mode": "shadow"},
]


def hostile_config(*, patterns: bool = True, scene: str = "s") -> dict[str, Any]:
    """A one-scene project config for the hostile streams (rules and, by default, the
    sequence patterns too)."""
    body: dict[str, Any] = {
        "lateness": HOSTILE_LATENESS,
        "features": copy.deepcopy(HOSTILE_FEATURES),
        "rules": copy.deepcopy(HOSTILE_RULES if patterns else HOSTILE_RULES[:2]),
        "policy": {"review_at": 50, "reject_at": 90},
    }
    if patterns:
        body["patterns"] = copy.deepcopy(HOSTILE_PATTERNS)
    return {"scenes": {scene: body}}


@dataclass
class HostileStats:
    """How often the generator aimed at each shape (what the streams cover)."""

    events: int = 0
    behind_clock: int = 0          # t < G − L: late by the scene clock
    idle_key_behind_clock: int = 0  # ... on a key idle past its horizon (the old bug)
    lag_within_lateness: int = 0   # G − L ≤ t < G − (a lagging source, still on time)
    watermark_ties: int = 0        # t == G − L exactly
    just_late: int = 0             # t == G − L − 1
    duplicates: int = 0


def hostile_stream(seed: int, n: int, *, prefix: str = "",
                   lateness_ms: int = HOSTILE_LATENESS_MS) -> tuple[list[dict[str, Any]],
                                                                    HostileStats]:
    """`n` events (ids and keys start with `prefix`) and what they cover."""
    rng = random.Random(seed)
    stats = HostileStats()
    events: list[dict[str, Any]] = []
    clock: int | None = None        # G, as the contract defines it
    sources = [BASE_TS] * 4          # source 3 is the lagging one
    last_seen: dict[str, int] = {}   # acct -> newest time sent on time
    accounts = [f"{prefix}a{i}" for i in range(12)]
    receivers = [f"{prefix}r{i}" for i in range(6)]

    def emit(t: int, acct: str | None, *, kind: str | None = None) -> None:
        nonlocal clock
        event_id = f"{prefix}h{seed}-{len(events)}"
        ev: dict[str, Any] = {"event_id": event_id, "timestamp": t}
        if acct is not None:
            ev["acct"] = acct
        r = rng.random()
        if r < 0.85:
            ev["rcv"] = rng.choice(receivers[:3] if rng.random() < 0.7 else receivers)
        elif r < 0.93:
            ev["rcv"] = None
        ev["channel"] = rng.choice(["web", "app"])
        ev["kind"] = kind or rng.choice(["pay", "pay", "pay", "login", "fail", "withdraw",
                                         "confirm"])
        amount = rng.choice([None, 0, 1, 10.5, 99.99, 250, 1000, 0.1, 1e-6, 2500.75])
        if amount is not None or rng.random() < 0.5:
            ev["amount"] = amount
        late = clock is not None and t < clock - lateness_ms
        if clock is not None:
            if late:
                stats.behind_clock += 1
                newest = last_seen.get(acct) if acct is not None else None
                if newest is not None and newest <= clock - lateness_ms - HOUR:
                    stats.idle_key_behind_clock += 1
                if t == clock - lateness_ms - 1:
                    stats.just_late += 1
            elif t < clock:
                stats.lag_within_lateness += 1
                if t == clock - lateness_ms:
                    stats.watermark_ties += 1
        if not late:
            clock = t if clock is None else max(clock, t)
            if acct is not None:
                last_seen[acct] = max(last_seen.get(acct, t), t)
        events.append(ev)

    while len(events) < n:
        r = rng.random()
        if events and r < 0.05:  # a duplicate id: same content, or other content
            old = copy.deepcopy(rng.choice(events[-50:]))
            if rng.random() < 0.5:
                old["amount"] = 12345  # other content, same id and time: the first stands
            events.append(old)
            stats.duplicates += 1
            continue
        if clock is not None and r < 0.09:  # exactly at the watermark, or one ms past it
            t = clock - lateness_ms - rng.choice([0, 0, 1])
            emit(t, rng.choice(accounts))
            continue
        if r < 0.11:  # an idle key comes back behind the clock (a lagging source)
            acct = rng.choice(accounts[8:])  # the quiet accounts
            newest = last_seen.get(acct)
            if newest is not None and clock is not None:
                emit(max(newest + rng.choice([1, MIN, 58 * MIN]),
                         clock - lateness_ms - rng.choice([1, 2 * MIN, 30 * MIN])), acct)
                continue
        if r < 0.112 and clock is not None:  # a long idle gap for everyone
            gap = rng.choice([2 * HOUR, 7 * HOUR])
            for s in range(3):
                sources[s] = max(sources[s], clock) + gap
        s = rng.choice([0, 0, 1, 1, 2, 3])
        if s == 3:  # the lagging source: falls behind, then catches up in jumps
            behind = rng.choice([0, 2 * MIN, lateness_ms - 1, lateness_ms, lateness_ms + 1,
                                 20 * MIN, 70 * MIN])
            lead = max(sources[:3])
            sources[3] = max(sources[3] + rng.randint(0, 30 * SEC), lead - behind)
            if rng.random() < 0.2:
                sources[3] = lead - behind
        else:  # the sources that run together: within a couple of minutes of each other
            sources[s] = max(sources[s] + rng.choice([0, 1, 500, 10 * SEC, 45 * SEC, 3 * MIN]),
                             max(sources[:3]) - rng.choice([0, 30 * SEC, 2 * MIN]))
        t = sources[s]
        acct: str | None = rng.choice(accounts[:8] if s != 3 else accounts[4:])
        if rng.random() < 0.03:
            acct = None
        emit(t, acct)
    stats.events = len(events)
    return events, stats
