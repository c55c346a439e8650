"""Labelled synthetic transfer traffic for demos, backtests and tests.

`generate_transfers` yields transfer events in arrival order (the order a replay treats as
the LSN). Background traffic comes from a large account population with a daily rhythm,
log-normal amounts around each account's own typical amount and mostly repeat receivers.
Three attack patterns are mixed in, each event labelled in its `label` field:

- ``mule_drain``: a stolen account sends about 1000 at a time, 120-160 times within an
  hour, into one mule account (or two, switching part-way). The victim is an account
  that paid no one in the hour before, and its owner makes no transfer until an hour
  after the drain. From its sixth transfer on (a few more with two mules) every
  transfer meets the example rule ``mule_drain`` (more than 5 transfers, more than 5000
  into the receiver, at most 2 receivers), so that rule's recall on this label is above
  0.9 by construction.
- ``card_testing``: one device makes a burst of 8-25 payments below 10 from several
  accounts within a few minutes.
- ``account_takeover``: an active account suddenly pays 2000-9500 from a device and IP it
  never used to receivers it never paid.

Ordinary amounts are log-normal (sigma 0.6) around each account's typical amount
(33 to 180); 0.5% are large (1,000 to 20,000, log-uniform: rent, a car, savings).

Timestamps are epoch milliseconds from a Poisson arrival process whose rate follows the
hour of day (UTC; quiet nights, busy afternoons, 100,000 transfers a day on average).
About 0.2% of events arrive 1-2 minutes after their event time, so a few are out of
order (never beyond the example config's 5 minute lateness).

Everything is drawn from one ``random.Random(seed)``: the same seed and arguments give the
same events. Account ids go through a seeded bijection, so mules and victims look like
any other account.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import NormalDist
from typing import Any

__all__ = ["DEFAULT_START", "FIELDS", "LABELS", "generate_transfers", "parse_start"]

FIELDS = ("event_id", "timestamp", "type", "pay_account", "rcv_account", "amount",
          "device_id", "ip", "label")
"""Fields of every generated event, in output order."""

LABELS = ("legit", "mule_drain", "card_testing", "account_takeover")

DEFAULT_START = "2026-01-05T00:00:00+00:00"
"""Default time of the first event (a Monday, midnight UTC)."""

_EVENTS_PER_DAY = 100_000
_HOURLY_SHAPE = (0.25, 0.18, 0.13, 0.10, 0.10, 0.15, 0.30, 0.60, 0.95, 1.20, 1.35, 1.45,
                 1.50, 1.45, 1.40, 1.40, 1.45, 1.50, 1.55, 1.60, 1.50, 1.20, 0.80, 0.45)
_HOUR_MS = 3_600_000
_MINUTE_MS = 60_000
_ACCOUNT_SPACE = 10**10
_MAX_ACCOUNTS = 2_000_000

_MULE_SHARE = 0.025
_CARD_SHARE = 0.010
_ATO_SHARE = 0.002
_LATE_ARRIVAL_RATE = 0.002
_FAVOURITE_SHARE = 0.85
_SECOND_DEVICE_SHARE = 0.03
_ROAMING_IP_SHARE = 0.10
_LARGE_SHARE = 0.005
_SPREAD_LEVELS = 4096
_SPREAD = tuple(math.exp(0.6 * NormalDist().inv_cdf((k + 0.5) / _SPREAD_LEVELS))
                for k in range(_SPREAD_LEVELS))
"""Log-normal factors (sigma 0.6) around an account's typical amount, by quantile."""

# One event before it gets its id: (time, seq, pay, rcv, amount, device, ip, label).
# `seq` is unique and breaks ties between equal times, so the order is deterministic.
_Row = tuple[int, int, str, str, float, str, str, str]


def parse_start(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 date or datetime; without an offset it is UTC.

    >>> parse_start("2026-01-05T00:00:00Z")
    1767571200000
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 date or datetime: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = int(moment.timestamp() * 1000)
    if ms < 0:
        raise ValueError(f"{text!r} is before 1970; event times are epoch milliseconds")
    return ms


@dataclass(frozen=True)
class _Attack:
    """One planned attack: its label, how many events it emits, and when it starts."""

    label: str
    size: int
    start_index: int


class _Population:
    """The accounts of one run, with everything an ordinary transfer needs precomputed."""

    def __init__(self, rng: random.Random, n_accounts: int) -> None:
        self.rng = rng
        self.size = n_accounts
        self.id_mult = rng.randrange(1, _ACCOUNT_SPACE // 10) * 10 + rng.choice((1, 3, 7, 9))
        self.id_offset = rng.randrange(_ACCOUNT_SPACE)
        self.next_fresh = n_accounts
        random_ = rng.random
        getrandbits = rng.getrandbits
        mult, offset = self.id_mult, self.id_offset
        self.ids = ids = [f"AC{(i * mult + offset) % _ACCOUNT_SPACE:010d}"
                          for i in range(n_accounts)]
        # Activity weights: most accounts pay rarely, a few often (capped at 5x the median).
        cumulative: list[float] = []
        total = 0.0
        for _ in range(n_accounts):
            total += min(math.exp(rng.gauss(0.0, 0.7)), 5.0)
            cumulative.append(total)
        self.cumulative = cumulative
        self.total_weight = total
        favourites: list[tuple[str, ...]] = []
        for i in range(n_accounts):
            picks = []
            for _ in range(1 + int(random_() * 4)):
                j = int(random_() * n_accounts)
                picks.append(ids[j if j != i else (j + 1) % n_accounts])
            favourites.append(tuple(picks))
        self.favourites = favourites
        self.typical = [math.exp(3.5 + 1.7 * random_()) for _ in range(n_accounts)]
        self.devices = [f"dev-{getrandbits(48):012x}" for _ in range(n_accounts)]
        self.second_devices = [f"dev-{getrandbits(48):012x}" for _ in range(n_accounts)]
        self.ips = [self.random_ip() for _ in range(n_accounts)]
        self.last_paid = [-math.inf] * n_accounts
        self.locked_until: dict[int, float] = {}

    def account_id(self, index: int) -> str:
        """The public id of an index: a seeded bijection onto 10-digit numbers."""
        return f"AC{(index * self.id_mult + self.id_offset) % _ACCOUNT_SPACE:010d}"

    def active_account(self) -> int:
        """An account drawn by activity weight (busy accounts more often)."""
        return bisect(self.cumulative, self.rng.random() * self.total_weight)

    def any_account(self) -> int:
        """An account drawn uniformly (a victim is anyone)."""
        return int(self.rng.random() * self.size)

    def free(self, index: int, now: float) -> bool:
        """Whether an account is not in the hands of a mule-draining attacker at `now`."""
        return self.locked_until.get(index, -math.inf) < now

    def quiet_account(self, now: float) -> int:
        """An account that paid no one in the last hour and is not under attack.

        Draining victims are quiet: the owner's own transfers would add receivers to the
        attacker's hour and hide the pattern the mule_drain rule looks for.
        """
        index = self.any_account()
        for _ in range(1_000):
            if self.last_paid[index] <= now - _HOUR_MS and self.free(index, now):
                break
            index = self.any_account()
        return index

    def lock(self, index: int, until: float) -> None:
        """Keep an account out of ordinary traffic until `until` (its owner is locked out)."""
        self.locked_until[index] = until
        self.last_paid[index] = max(self.last_paid[index], until)

    def fresh_account(self) -> str:
        """An account never seen before: a mule, a merchant or a new receiver."""
        self.next_fresh += 1
        return self.account_id(self.next_fresh - 1)

    def fresh_device(self) -> str:
        """A device never seen before."""
        return f"dev-{self.rng.getrandbits(48):012x}"

    def random_ip(self) -> str:
        """A random public-looking IPv4 address (never one of the example block lists)."""
        n = self.rng.randrange(0x0B000000, 0x63FFFFFF)
        return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


class _Attacks:
    """Generators of the labelled attack patterns."""

    def __init__(self, rng: random.Random, population: _Population) -> None:
        self.rng = rng
        self.population = population

    def plan(self, n_events: int) -> list[_Attack]:
        """Choose attacks and sizes up front so the total is exactly ``n_events``.

        Each pattern gets a share of the events; with 1,000 events or more every pattern
        appears at least once.
        """
        rng = self.rng
        sizes: list[tuple[str, int]] = []
        for label, share, low, high in (("mule_drain", _MULE_SHARE, 120, 160),
                                        ("card_testing", _CARD_SHARE, 8, 25),
                                        ("account_takeover", _ATO_SHARE, 1, 3)):
            budget = int(n_events * share)
            used = 0
            while True:
                size = rng.randint(low, high)
                if used + size > budget and not (used == 0 and n_events >= 1_000):
                    break
                sizes.append((label, size))
                used += size
        background = n_events - sum(size for _, size in sizes)
        return [_Attack(label, size, rng.randrange(max(background, 1)))
                for label, size in sizes]

    def rows(self, attack: _Attack, t0: int, seq: int) -> list[_Row]:
        """The events of one planned attack starting at t0, numbered from ``seq``."""
        if attack.label == "mule_drain":
            return self.mule_drain(attack.size, t0, seq)
        if attack.label == "card_testing":
            return self.card_testing(attack.size, t0, seq)
        return self.account_takeover(attack.size, t0, seq)

    def mule_drain(self, size: int, t0: int, seq: int) -> list[_Row]:
        """A stolen account drains into one or two mules: ~1000 per transfer, < 1 hour."""
        rng, people = self.rng, self.population
        victim_index = people.quiet_account(t0)
        victim = people.ids[victim_index]
        mules = [people.fresh_account()]
        switch = size
        if rng.random() < 0.2:
            mules.append(people.fresh_account())
            switch = rng.randint(size // 3, 2 * size // 3)
        device, ip = people.fresh_device(), people.random_ip()
        gap = rng.uniform(20, 55) * _MINUTE_MS / size
        t = float(t0 + rng.randrange(_MINUTE_MS))
        rows: list[_Row] = []
        for i in range(size):
            amount = 1000.0 if rng.random() < 0.6 else round(rng.uniform(950, 1500), 2)
            rows.append((int(t), seq + i, victim, mules[0] if i < switch else mules[1],
                         amount, device, ip, "mule_drain"))
            t += gap * rng.uniform(0.5, 1.5)
        people.lock(victim_index, t + _HOUR_MS)
        return rows

    def card_testing(self, size: int, t0: int, seq: int) -> list[_Row]:
        """One device tries small payments from several accounts within minutes."""
        rng, people = self.rng, self.population
        picked = [people.any_account() for _ in range(rng.randint(3, 6))]
        accounts = [people.ids[i] for i in picked if people.free(i, t0)] or [people.fresh_account()]
        merchants = [people.fresh_account() for _ in range(rng.randint(1, 3))]
        device, ip = people.fresh_device(), people.random_ip()
        t = float(t0)
        rows: list[_Row] = []
        for i in range(size):
            amount = round(rng.uniform(0.5, 9.99), 2)
            rows.append((int(t), seq + i, rng.choice(accounts), rng.choice(merchants),
                         amount, device, ip, "card_testing"))
            t += rng.uniform(3_000, 40_000)
        for index in picked:
            people.last_paid[index] = max(people.last_paid[index], t)
        return rows

    def account_takeover(self, size: int, t0: int, seq: int) -> list[_Row]:
        """An active account pays large amounts from a new device to new receivers."""
        rng, people = self.rng, self.population
        victim_index = people.active_account()
        while not people.free(victim_index, t0):
            victim_index = people.active_account()
        victim = people.ids[victim_index]
        device, ip = people.fresh_device(), people.random_ip()
        t = float(t0)
        rows: list[_Row] = []
        for i in range(size):
            amount = round(rng.uniform(2_000, 9_500), 2)
            rows.append((int(t), seq + i, victim, people.fresh_account(), amount, device, ip,
                         "account_takeover"))
            t += rng.uniform(1, 10) * _MINUTE_MS
        people.last_paid[victim_index] = max(people.last_paid[victim_index], t)
        return rows


def generate_transfers(n_events: int, seed: int,
                       start_ms: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``n_events`` labelled transfer events in arrival order.

    Streams: besides the account population, memory holds only the attacks in flight.
    """
    if n_events < 0:
        raise ValueError("the number of events must not be negative")
    rng = random.Random(seed)
    prefix = f"tx{rng.getrandbits(24):06x}"
    people = _Population(rng, max(1_000, min(n_events // 8, _MAX_ACCOUNTS)))
    attacks = _Attacks(rng, people)
    plan = sorted(attacks.plan(n_events), key=lambda a: a.start_index)
    n_background = n_events - sum(a.size for a in plan)
    mean_shape = sum(_HOURLY_SHAPE) / len(_HOURLY_SHAPE)
    rates = [_EVENTS_PER_DAY / 86_400_000 / mean_shape * s for s in _HOURLY_SHAPE]

    random_, expovariate, exp = rng.random, rng.expovariate, math.exp
    spread = _SPREAD
    large_low, large_span = math.log(1_000), math.log(20_000) - math.log(1_000)
    ids, favourites, typical = people.ids, people.favourites, people.typical
    devices, second_devices, ips = people.devices, people.second_devices, people.ips
    cumulative, total_weight, n_accounts = people.cumulative, people.total_weight, people.size
    last_paid, locked_until = people.last_paid, people.locked_until
    heappush, heappop = heapq.heappush, heapq.heappop

    pending: list[_Row] = []  # attack events not yet due, by time
    in_flight: list[tuple[int, int, _Row]] = []  # delayed events, by arrival time
    emitted = 0
    seq = 0
    t = float(parse_start(DEFAULT_START) if start_ms is None else start_ms)
    next_attack = 0

    def event(row: _Row) -> dict[str, Any]:
        nonlocal emitted
        emitted += 1
        return {"event_id": f"{prefix}-{emitted - 1:08d}", "timestamp": row[0],
                "type": "transfer", "pay_account": row[2], "rcv_account": row[3],
                "amount": row[4], "device_id": row[5], "ip": row[6], "label": row[7]}

    def send(row: _Row) -> Iterator[dict[str, Any]]:
        """Pass a row through the network: a few arrive 1-2 minutes late."""
        now = row[0]
        while in_flight and in_flight[0][0] <= now:
            yield event(heappop(in_flight)[2])
        if random_() < _LATE_ARRIVAL_RATE:
            heappush(in_flight, (now + rng.randrange(_MINUTE_MS, 2 * _MINUTE_MS), row[1], row))
        else:
            yield event(row)

    for index in range(n_background + 1):
        if index < n_background:
            t += expovariate(rates[int(t // _HOUR_MS) % 24])
        now = int(t)
        while next_attack < len(plan) and plan[next_attack].start_index <= index:
            for attack_row in attacks.rows(plan[next_attack], now, seq):
                heappush(pending, attack_row)
            seq += plan[next_attack].size
            next_attack += 1
        while pending and (pending[0][0] <= now or index == n_background):
            yield from send(heappop(pending))
        if index == n_background:
            break
        payer = bisect(cumulative, random_() * total_weight)
        while payer in locked_until and locked_until[payer] >= now:
            payer = bisect(cumulative, random_() * total_weight)
        last_paid[payer] = now
        if random_() < _FAVOURITE_SHARE:
            choices = favourites[payer]
            receiver = choices[int(random_() * random_() * len(choices))]
        else:
            other = int(random_() * n_accounts)
            receiver = ids[other if other != payer else (other + 1) % n_accounts]
        if random_() >= _LARGE_SHARE:
            amount = int(typical[payer] * spread[int(random_() * _SPREAD_LEVELS)] * 100 + 0.5) / 100
        else:
            amount = int(exp(large_low + large_span * random_()) * 100 + 0.5) / 100
        device = devices[payer] if random_() >= _SECOND_DEVICE_SHARE else second_devices[payer]
        ip = ips[payer] if random_() >= _ROAMING_IP_SHARE else people.random_ip()
        row = (now, seq, ids[payer], receiver, amount, device, ip, "legit")
        seq += 1
        while in_flight and in_flight[0][0] <= now:
            yield event(heappop(in_flight)[2])
        if random_() < _LATE_ARRIVAL_RATE:
            heappush(in_flight, (now + rng.randrange(_MINUTE_MS, 2 * _MINUTE_MS), row[1], row))
        else:
            yield event(row)
    while in_flight:
        yield event(heappop(in_flight)[2])
