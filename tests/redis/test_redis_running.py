"""Busy entities give exactly what small ones give: the oracle decides.

`running_from` moves the point where an entity switches from scanning its entries to
running totals: 0 and 1 put every entity on running totals from its first entry, a huge
value keeps every entity scanning, the default is in between. A tiny `bucket_value_max`
pages every entity into its own hash and sorted set, and a tiny `page_entries` makes the
calls read its entries a few at a time and sends it back to its bucket often. All of it
happens inside one function call, so these run on the single server only.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.features.test_oracle_hypothesis import (
    HISTORY_FEATURES,
    LATENESS,
    LATENESS_MS,
    TILED_FEATURES,
    event_streams,
)
from tests.oracle import Oracle
from tests.redis.redis_harness import RedisDecider
from tests.streams import (
    BASE_TS,
    STREAM_FEATURES,
    STREAM_LATENESS,
    STREAM_LATENESS_MS,
    random_stream,
    run_against_oracle,
)


@pytest.fixture
def client(standalone_client: redis.Redis) -> redis.Redis:
    return standalone_client


# no min/max: every window of the running entities is computed from its running state
RUNNING_FEATURES: list[Any] = [
    "count(acct.history,1s)",
    "count(acct.history,1m)",
    "sum(amount#acct.history,1m)",
    "avg(amount#acct.history,1h)",
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
    {"name": "web_distinct_1m", "func": "count_distinct", "target": "merchant",
     "by": ["acct"], "window": "1m", "where": "channel == 'web'"},
    "count_distinct(acct#dev.history,1h)",
    "stddev(amount#dev.history,1m)",
    {"name": "m_sum_2d", "func": "sum", "target": "amount", "by": ["merchant"],
     "window": "2d", "kind": "window", "hop": "1h"},
    "sum(amount#merchant.history,10m)",
]


@pytest.mark.parametrize("running_from", [0, 5, 10**9])
def test_running_totals_match_oracle(client: redis.Redis, running_from: int) -> None:
    events = random_stream(31, 500)
    decider = RedisDecider(client, RUNNING_FEATURES, STREAM_LATENESS,
                           running_from=running_from)
    run_against_oracle(decider, "s", events, Oracle(RUNNING_FEATURES, STREAM_LATENESS_MS))
    running = decider.features.stats()["running_states"]
    assert (running > 0) == (running_from < 10**9)


PAGED: dict[str, dict[str, Any]] = {
    "chunks-of-2": {"bucket_value_max": 40, "page_entries": 2},
    "chunks-of-3-running": {"bucket_value_max": 40, "page_entries": 3, "running_from": 0},
    "chunks-of-5-scanning": {"bucket_value_max": 100, "page_entries": 5,
                             "running_from": 10**9},
}


@pytest.mark.parametrize("layout", list(PAGED))
def test_paged_entities_match_oracle(client: redis.Redis, layout: str) -> None:
    """Every function, tiled windows, late events and duplicates, on paged entities."""
    events = random_stream(33, 500)
    decider = RedisDecider(client, STREAM_FEATURES, STREAM_LATENESS, **PAGED[layout])
    run_against_oracle(decider, "s", events, Oracle(STREAM_FEATURES, STREAM_LATENESS_MS))
    assert decider.features.stats()["keys"] > 0


def test_running_totals_with_min_max(client: redis.Redis) -> None:
    """Windows with min/max scan while their siblings run on totals."""
    events = random_stream(32, 500)
    run_against_oracle(RedisDecider(client, STREAM_FEATURES, STREAM_LATENESS, running_from=1),
                       "s", events, Oracle(STREAM_FEATURES, STREAM_LATENESS_MS))


def test_running_totals_follow_a_busy_key(client: redis.Redis) -> None:
    """One key, thousands of events with disorder: the window slides over running totals."""
    features = ["count(a.history,1m)", "sum(v#a.history,1m)", "count_distinct(w#a.history,1m)",
                "stddev(v#a.history,10s)", "first(w#a.history,1m)", "last(v#a.history,1m)"]
    events = [{"event_id": f"b{i}", "timestamp": BASE_TS + 200 * i - (i * 7919) % 3000,
               "a": "hot", "v": (i * 37) % 1000 / 100, "w": f"w{i % 23}"}
              for i in range(800)]
    decider = RedisDecider(client, features, "5s", page_entries=16)
    run_against_oracle(decider, "s", events, Oracle(features, 5_000))
    stats = decider.features.stats()
    assert stats["running_states"] == 1
    # trimming keeps the window (1 min of 200 ms events) and at most a page more
    assert stats["retained_entries"] <= 60_000 / 200 + 5_000 / 200 + 3_000 / 200 + 16


def test_min_max_of_a_busy_key_by_spans(client: redis.Redis) -> None:
    """One busy key, out of order, with ties (equal values at equal times, and 3 beside
    3.0, which min/max must return as they came in): a paged entity with running states
    keeps the extreme of each span of its min/max windows and reads the spans between a
    window's two edges whole; every answer equals the oracle's."""
    features = ["min(v#a.history,1m)", "max(v#a.history,1m)", "max(v#a.history,10m)",
                "count(a.history,10m)",
                {"name": "web_min_10m", "func": "min", "target": "v", "by": ["a"],
                 "window": "10m", "where": "w != 'w3'"}]
    events = []
    for i in range(1500):
        value: Any = (i * 7919) % 61 / 4 if i % 5 else None
        if value is not None and value.is_integer() and i % 2:
            value = int(value)  # the same number as an int: 3 beside 3.0
        events.append({"event_id": f"x{i}", "timestamp": BASE_TS + 400 * i - (i * 31) % 4000
                       - (i % 3 == 0) * 400,  # ties in time, disorder within 5 s
                       "a": "hot", "v": value, "w": f"w{i % 7}"})
    decider = RedisDecider(client, features, "5s", page_entries=8)
    run_against_oracle(decider, "s", events, Oracle(features, 5_000))
    own = [k for k in client.scan_iter(match="re:{s|a|*") if b":e:" not in k
           and client.type(k) == b"hash" and client.hexists(k, "h")]
    assert own, "the busy key is not paged"
    spans = [f for k in own for f in client.hkeys(k) if f.startswith(b"x")]
    # four (window, min/max) pairs by spans of W / 64, those of the last W + L kept:
    # 64 to 70 each
    assert 4 * 60 <= len(spans) <= 4 * 72, len(spans)



def _burst_then_an_earlier_peak() -> list[dict[str, Any]]:
    """A busy key: a quiet minute, a burst of small values over 3 s, then (in order for
    the clock, within the lateness) an event 2.8 s back with the largest value, then more
    of the burst's time."""
    events = [{"event_id": f"q{i}", "timestamp": BASE_TS + 1_500 * i, "a": "hot",
               "v": 1 + i % 5} for i in range(40)]
    burst = BASE_TS + 60_000
    events += [{"event_id": f"b{i}", "timestamp": burst + 50 * i, "a": "hot", "v": 2 + i % 3}
               for i in range(61)]
    # its window holds fewer entries than the running state's corrections (the burst
    # after it): it is scanned, and lands in a span between the burst's window edges
    events.append({"event_id": "peak", "timestamp": burst + 200, "a": "hot", "v": 90})
    events += [{"event_id": f"c{i}", "timestamp": burst + 3_000 + 10 * i, "a": "hot",
                "v": 1} for i in range(5)]
    return events


def test_kept_extreme_of_the_spans_between_is_mended(client: redis.Redis) -> None:
    """The extreme of the spans between a window's edges is kept across events; an entry
    landing in one of those spans from an event that read its window otherwise (scanned)
    mends it, so the next events see it."""
    features = ["max(v#a.history,1m)", "min(v#a.history,1m)", "count(a.history,1m)"]
    events = _burst_then_an_earlier_peak()
    decider = RedisDecider(client, features, "5s", page_entries=4, bucket_value_max=64,
                           running_from=1)
    got = run_against_oracle(decider, "s", events, Oracle(features, 5_000))
    assert [d.features["max(v#a.history,1m)"] for d in got[-5:]] == [90] * 5
    own = [k for k in client.scan_iter(match="re:{s|a|*") if b":e:" not in k
           and client.type(k) == b"hash" and client.hexists(k, "h")]
    assert own, "the busy key is not paged"
    kept = [f for k in own for f in client.hkeys(k) if f.startswith(b"m")]
    assert len(kept) == 2, kept  # one per min/max window



def test_min_max_over_a_window_shorter_than_the_lateness(client: redis.Redis) -> None:
    """Windows of 3 s and 1 s under 5 s of lateness: events out of order land in the span
    at a later event's window start, whose kept candidates then go; every answer equals
    the oracle's."""
    features = ["max(v#a.history,3s)", "min(v#a.history,1s)", "count(a.history,3s)"]
    events = []
    for i in range(1500):
        # in order 10 ms apart, but every seventh event (the largest value) 20 ms inside
        # the 3 s window of the one before and every seventh but two (the smallest) inside
        # its 1 s window: each lands in the span the next events' windows start in
        back, v = {3: (2_980, 100), 5: (980, -1)}.get(i % 7, (0, (i * 7919) % 61 / 4))
        events.append({"event_id": f"s{i}", "timestamp": BASE_TS + 10 * i - back,
                       "a": "hot", "v": v})
    decider = RedisDecider(client, features, "5s", page_entries=8, bucket_value_max=64,
                           running_from=1)
    run_against_oracle(decider, "s", events, Oracle(features, 5_000))


def _busy_min_max_stream(seed: int) -> tuple[list[Any], str, list[dict[str, Any]]]:
    """Features, lateness and events of one busy key under min/max windows longer and
    shorter than the lateness: disorder up to past the lateness (some events late),
    equal values and times, missing values, a filter, repeated ids, a quiet second key."""
    rng = random.Random(seed)
    lateness_ms = rng.choice([500, 2_000])
    windows = rng.sample(["300ms", "1s", "3s", "20s"], 3)
    features: list[Any] = [f"max(v#a.history,{windows[0]})", f"min(v#a.history,{windows[1]})",
                           f"count(a.history,{windows[2]})",
                           {"name": "web_max", "func": "max", "target": "v", "by": ["a"],
                            "window": windows[2], "where": "w != 'w1'"}]
    step = rng.choice([5, 20, 60])
    events: list[dict[str, Any]] = []
    t = BASE_TS
    for i in range(rng.randint(150, 500)):
        t += rng.choice([0, step, step, 2 * step])
        back = rng.choice([0, 0, 0, rng.randint(0, lateness_ms * 6 // 5)])
        v: Any = rng.choice([None, 1, 2, 2.0, 3, 7.5, rng.randint(-5, 40)])
        ev: dict[str, Any] = {"event_id": f"m{i}", "timestamp": t - back,
                              "a": "hot" if rng.random() < 0.9 else "cold", "w": f"w{i % 3}"}
        if v is not None:
            ev["v"] = v
        if events and rng.random() < 0.03:
            ev = dict(events[rng.randrange(len(events))])  # a retry
        events.append(ev)
    return features, f"{lateness_ms}ms", events


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32 - 1))
def test_min_max_of_busy_keys_match_oracle(client: redis.Redis, seed: int) -> None:
    """Busy keys' min/max windows from spans and kept fields, against the oracle, over
    random disorder, lateness, window lengths, ties and retries."""
    client.flushall()
    features, lateness, events = _busy_min_max_stream(seed)
    decider = RedisDecider(client, features, lateness, page_entries=4, bucket_value_max=64,
                           running_from=1)
    run_against_oracle(decider, "s", events, Oracle(features, int(lateness[:-2])))


def test_min_max_of_a_busy_key_read_by_a_partition_behind_another(
        client: redis.Redis) -> None:
    """Two partitions of a stream (a clock each) over one key: partition p1 far ahead,
    p0 still deciding events its lateness lets in. The key becomes busy (paged, with
    running states) on p0's events after p1's: its spans and states start where the
    slowest clock can still read, so p0's windows still see the peak at 20 s."""
    features = ["max(v#a.history,1m)", "count(a.history,1m)"]
    decider = RedisDecider(client, features, "5s", page_entries=4, bucket_value_max=150,
                           running_from=1)
    sent = [("p0", 2 * i, 100 if i == 10 else 1) for i in range(16)]
    sent += [("p1", 100, 1)] + [("p0", s, 1) for s in (40, 41, 42, 43)]
    stored: list[tuple[int, int]] = []
    for n, (part, second, v) in enumerate(sent):
        t = BASE_TS + 1_000 * second
        decision = decider.engine.evaluate(
            "s", {"event_id": f"p{n}", "timestamp": t, "a": "hot", "v": v},
            clock=("topic", part))
        assert not decision.late
        window = [x for at, x in stored if t - 60_000 < at <= t] + [v]
        assert decision.features["max(v#a.history,1m)"] == max(window), (part, second)
        assert decision.features["count(a.history,1m)"] == len(window), (part, second)
        stored.append((t, v))
    assert decision.features["max(v#a.history,1m)"] == 100

# what a version that knows nothing of kept extremes does to a busy key's header: it
# writes the eight values it knows (the ninth, the mark, goes)
_DROP_MARK = """
local h = redis.call('HGET', KEYS[1], 'h')
local header, blob = cmsgpack.unpack(h)
blob[9] = nil
redis.call('HSET', KEYS[1], 'h', cmsgpack.pack(header, blob))
return 1
"""


def test_kept_extremes_without_the_mark_are_not_read(client: redis.Redis) -> None:
    """A header written without the mark (by an earlier version, which does not mend
    kept extremes) makes the entity drop them: a wrong kept extreme is never read."""
    features = ["max(v#a.history,1m)", "count(a.history,1m)"]
    events = _burst_then_an_earlier_peak()
    decider = RedisDecider(client, features, "5s", page_entries=4, bucket_value_max=64,
                           running_from=1)
    oracle = Oracle(features, 5_000)
    run_against_oracle(decider, "s", events[:-1], oracle)
    own = [k for k in client.scan_iter(match="re:{s|a|*") if b":e:" not in k
           and client.type(k) == b"hash" and client.hexists(k, "h")]
    assert len(own) == 1
    [kept] = [f for f in client.hkeys(own[0]) if f.startswith(b"m")]
    # an earlier version moved the spans on without mending: the kept extreme is stale
    wrong = client.eval("""
        local m = cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1]))
        m[3], m[4], m[5] = 0, 0, '1'
        redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(m))
        return 1""", 1, own[0], kept)
    assert wrong == 1
    client.eval(_DROP_MARK, 1, own[0])
    [last] = run_against_oracle(decider, "s", events[-1:], oracle, start=len(events) - 1)
    assert last.features["max(v#a.history,1m)"] == 90

def test_tiles_of_a_busy_key_close_into_its_hash(client: redis.Redis) -> None:
    """One busy key over two days of tiles of 10 minutes, out of order, with late events:
    its tiled counts and sums are the oracle's, the tiles no event can change any more
    are hash fields read by running sums, and its header does not grow with them."""
    features = [{"name": "n_6h", "func": "count", "by": ["a"], "window": "6h",
                 "kind": "window", "hop": "10m"},
                {"name": "sum_1d", "func": "sum", "target": "v", "by": ["a"],
                 "window": "1d", "kind": "window", "hop": "10m"},
                {"name": "avg_2h", "func": "avg", "target": "v", "by": ["a"],
                 "window": "2h", "kind": "window", "hop": "10m"},
                "count(a.history,10m)"]
    minute = 60_000
    events = []
    for i in range(900):
        late = i % 97 == 0  # behind the clock by more than L (2 min): late
        events.append({"event_id": f"t{i}", "a": "hot", "v": (i * 37) % 500 / 4,
                       "timestamp": BASE_TS + 3 * minute * i - (i * 7919) % (90_000)
                       - (10 * minute if late else 0)})
    decider = RedisDecider(client, features, "2m")
    got = run_against_oracle(decider, "s", events, Oracle(features, 2 * minute))
    assert any(d.late for d in got)
    own = [k for k in client.scan_iter(match="re:{s|a|*") if b":e:" not in k
           and client.type(k) == b"hash" and client.hexists(k, "h")]
    assert len(own) == 1, "the busy key is not paged"
    tiles = [f for f in client.hkeys(own[0]) if f.startswith(b"t")]
    # one tiled group (one kind, filter and hop): a day of 10-minute tiles, closed
    assert 140 <= len(tiles) <= 150, len(tiles)
    header = client.hstrlen(own[0], "h")
    assert header < 1500, header  # the open tiles and running sums, not 435 tiles


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_streams())
def test_running_history_features_match_oracle(client: redis.Redis,
                                               events: list[dict[str, Any]]) -> None:
    client.flushall()
    run_against_oracle(RedisDecider(client, HISTORY_FEATURES, LATENESS, running_from=0), "s",
                       events, Oracle(HISTORY_FEATURES, LATENESS_MS))


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_streams())
def test_paged_tiled_and_history_features_match_oracle(
        client: redis.Redis, events: list[dict[str, Any]]) -> None:
    client.flushall()
    features = HISTORY_FEATURES + TILED_FEATURES[1:]
    run_against_oracle(RedisDecider(client, features, LATENESS, bucket_value_max=40,
                                    page_entries=2, running_from=1), "s",
                       events, Oracle(features, LATENESS_MS))
