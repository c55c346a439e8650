"""Brute-force exact values of the three seed features, straight from docs/semantics.md.

For event *i* with time *t*: every earlier-or-same arrival *j <= i* with the same key and
``t - W < t(j) <= t``. Sums use the contract's micro-units: ``Σ round(v * 1e6) / 1e6``.
Valid for workloads without late events (``benchmarks.workload`` keeps disorder below the
lateness, so every event is stored and nothing inside a window is forgotten).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

HOUR_MS = 3_600_000
COUNT = "count(pay_account.history,1h)"
SUM = "sum(amount#rcv_account.history,1h)"
DISTINCT = "count_distinct(rcv_account#pay_account.history,1h)"


def _index(events: Sequence[dict[str, Any]], field: str) -> dict[Any, list[int]]:
    groups: dict[Any, list[int]] = {}
    for i, e in enumerate(events):
        groups.setdefault(e.get(field), []).append(i)
    return groups


def exact_features(events: Sequence[dict[str, Any]], sample: Iterable[int],
                   window_ms: int = HOUR_MS) -> dict[int, dict[str, Any]]:
    """Feature values for the events at the ``sample`` positions, by scanning every event
    of the key that arrived up to that position."""
    by_pay = _index(events, "pay_account")
    by_rcv = _index(events, "rcv_account")
    out: dict[int, dict[str, Any]] = {}
    for i in sample:
        e = events[i]
        t = e["timestamp"]
        lo = t - window_ms
        pay_in = [events[j] for j in by_pay[e["pay_account"]] if j <= i
                  and lo < events[j]["timestamp"] <= t]
        rcv_in = [events[j] for j in by_rcv[e["rcv_account"]] if j <= i
                  and lo < events[j]["timestamp"] <= t]
        amounts = [x["amount"] for x in rcv_in if x.get("amount") is not None]
        distinct = {x["rcv_account"] for x in pay_in if x.get("rcv_account") is not None}
        out[i] = {
            COUNT: len(pay_in),
            SUM: sum(round(v * 1_000_000) for v in amounts) / 1_000_000 if amounts else None,
            DISTINCT: len(distinct) if distinct else None,
        }
    return out
