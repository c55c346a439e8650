"""Deterministic transfer workload for the seed benchmark.

A day of transfers between many accounts, in arrival order, with the cases a fraud team
sees and the seed's 100-events-per-key history gets wrong:

- everyday traffic: many payers (Zipf-skewed activity), each with a few usual receivers,
  plus payments to merchants whose popularity is Zipf-skewed (the top merchants receive
  hundreds of transfers an hour);
- payroll / corporate accounts sending hundreds of transfers an hour to distinct people;
- drains: a stolen account sends 6-25 transfers of about 1000 to one or two mules within
  minutes (the seed rule's target);
- mule hubs: many stolen accounts drained into one mule inside an hour (> 100 events);
- smurfing: many stolen accounts each send several small amounts to one mule, whose hour
  holds more than 100 transfers that only add up past 5000 all together;
- takeovers of busy accounts: an account that paid many distinct receivers is then drained
  more than 100 times into one mule.

Timestamps are epoch milliseconds. Arrival order follows a base time; each event's
timestamp is its base time minus a jitter below ``MAX_JITTER_MS`` (30 s), so events arrive
slightly out of order but never later than the scene's 5 minute lateness allows: every
event is scored and stored, and no event inside an hour window is ever forgotten.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from datetime import UTC, datetime

START_MS = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000
MINUTE_MS = 60 * 1000
MAX_JITTER_MS = 30 * 1000


@dataclass(frozen=True)
class WorkloadSpec:
    """Size and seed of a workload; everything else derives from these."""

    events: int = 300_000
    seed: int = 4
    span_ms: int = DAY_MS


def _zipf_cdf(n: int, s: float) -> list[float]:
    weights = [1.0 / (i + 1) ** s for i in range(n)]
    return list(itertools.accumulate(weights))


def _pick(rng: random.Random, cdf: list[float]) -> int:
    return bisect.bisect_left(cdf, rng.random() * cdf[-1])


def _everyday_amount(rng: random.Random) -> float:
    return round(min(rng.lognormvariate(4.2, 1.1), 20_000.0), 2)


class _Builder:
    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.rows: list[tuple[int, str, str, float]] = []
        self.stolen = itertools.count()

    def add(self, base: int, pay: str, rcv: str, amount: float) -> None:
        if 0 <= base < self.spec.span_ms:
            self.rows.append((base, pay, rcv, amount))

    def burst(self, pay: str, receivers: list[str], n: int, start: int, length: int,
              amount: tuple[float, float]) -> None:
        rng = self.rng
        for i in range(n):
            at = start + (i * length) // max(n - 1, 1) + rng.randrange(0, 20_000)
            self.add(at, pay, rng.choice(receivers), round(rng.uniform(*amount), 2))

    def stolen_account(self) -> str:
        return f"acct-s{next(self.stolen):06d}"


def _scenarios(b: _Builder, n: int) -> None:
    rng = b.rng
    span = b.spec.span_ms
    per_200k = max(1, round(n / 200_000))
    mules = [f"mule-{i:05d}" for i in range(max(50, n // 4000))]

    for p in range(max(2, n // 100_000)):
        payer = f"corp-{p:04d}"
        rate = rng.randint(150, 400)
        open_at = 8 * HOUR_MS + rng.randrange(0, HOUR_MS)
        for h in range(9):
            for _ in range(rate):
                staff = f"acct-p{p:02d}{rng.randrange(0, 3000):05d}"
                b.add(open_at + h * HOUR_MS + rng.randrange(0, HOUR_MS), payer, staff,
                      round(rng.uniform(1000, 8000), 2))

    for _ in range(max(5, n // 2000)):
        pair = rng.sample(mules, rng.choice((1, 2)))
        b.burst(b.stolen_account(), pair, rng.randint(6, 25), rng.randrange(0, span),
                rng.randint(2, 20) * MINUTE_MS, (990.0, 1000.0))

    for _ in range(per_200k):
        hub = rng.choice(mules)
        start = rng.randrange(0, span - HOUR_MS)
        for _ in range(rng.randint(14, 20)):
            b.burst(b.stolen_account(), [hub], rng.randint(7, 10),
                    start + rng.randrange(0, 30 * MINUTE_MS), 25 * MINUTE_MS, (950.0, 1000.0))

    for _ in range(per_200k):
        mule = rng.choice(mules)
        start = rng.randrange(0, span - HOUR_MS)
        for _ in range(rng.randint(18, 24)):
            b.burst(b.stolen_account(), [mule], rng.randint(6, 8),
                    start + rng.randrange(0, 20 * MINUTE_MS), 30 * MINUTE_MS, (40.0, 55.0))

    for t in range(per_200k):
        victim = f"busy-{t:04d}"
        start = rng.randrange(0, span - 2 * HOUR_MS)
        for i in range(80):
            b.add(start + i * 30_000, victim, f"acct-v{t:02d}{i:05d}",
                  round(rng.uniform(200, 3000), 2))
        b.burst(victim, [rng.choice(mules)], 110, start + 40 * MINUTE_MS, 15 * MINUTE_MS,
                (999.0, 1000.0))


def _everyday(b: _Builder, n: int) -> None:
    rng = b.rng
    span = b.spec.span_ms
    payers = max(1_000, n // 8)
    merchants = max(200, n // 100)
    payer_cdf = _zipf_cdf(payers, 0.6)
    merchant_cdf = _zipf_cdf(merchants, 0.9)
    while len(b.rows) < n:
        p = _pick(rng, payer_cdf)
        if rng.random() < 0.65:
            rcv = f"acct-{(p * 7919 + 1 + rng.randrange(0, 3) * 104_729) % (payers * 3):08d}"
        else:
            rcv = f"shop-{_pick(rng, merchant_cdf):06d}"
        b.add(rng.randrange(0, span), f"acct-{p:08d}", rcv, _everyday_amount(rng))


def generate(spec: WorkloadSpec | None = None) -> list[dict[str, object]]:
    """Return ``spec.events`` transfer events in arrival order (deterministic in the seed)."""
    spec = spec or WorkloadSpec()
    b = _Builder(spec)
    _scenarios(b, spec.events)
    _everyday(b, spec.events)
    rows = b.rows[: spec.events] if len(b.rows) > spec.events else b.rows
    rows.sort(key=lambda r: r[0])
    rng = random.Random(spec.seed + 1)
    events: list[dict[str, object]] = []
    for base, pay, rcv, amount in rows:
        events.append({
            "event_id": f"{rng.getrandbits(128):032x}",
            "timestamp": START_MS + base - rng.randrange(0, MAX_JITTER_MS),
            "pay_account": pay,
            "rcv_account": rcv,
            "amount": amount,
        })
    return events


def describe(events: list[dict[str, object]]) -> dict[str, int]:
    """Counts that show the mix: accounts, and keys whose busiest hour exceeds 100 events."""
    pays: dict[object, list[int]] = {}
    rcvs: dict[object, list[int]] = {}
    for e in events:
        ts = int(e["timestamp"])  # type: ignore[call-overload]
        pays.setdefault(e["pay_account"], []).append(ts)
        rcvs.setdefault(e["rcv_account"], []).append(ts)

    def over_100(groups: dict[object, list[int]]) -> int:
        hot = 0
        for times in groups.values():
            if len(times) <= 100:
                continue
            times.sort()
            if any(times[i + 100] - times[i] < HOUR_MS for i in range(len(times) - 100)):
                hot += 1
        return hot

    return {
        "events": len(events),
        "pay_accounts": len(pays),
        "rcv_accounts": len(rcvs),
        "pay_accounts_over_100_per_hour": over_100(pays),
        "rcv_accounts_over_100_per_hour": over_100(rcvs),
    }
