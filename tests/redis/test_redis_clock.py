"""The scene clock in Redis: lateness by G alone, whatever each key holds, with two
workers taking turns (two clients, as two service workers), on one Redis and a 3-primary
cluster; state of the older per-key layout refused at start.

Each stream is decided by two engines on Redis state (`RedisState`) in turns, one event
at a time, and compared with the oracle (tests/oracle.py) after every event; the expected values of
docs/semantics.md are also written out where they show the point.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis

from riskengine import Engine
from riskengine.decision import Decision
from riskengine.state.redis import connect
from riskengine.state.redis.backend import RedisState
from riskengine.state.redis.clock import SharedClock, StateFormatError
from riskengine.state.redis.codec import RedisStateError, StateUnavailableError
from riskengine.state.redis.functions import Client
from tests.features.test_patterns import ABS, EXAMPLE, SEQ, T0
from tests.oracle import Oracle, parse_duration
from tests.redis.redis_harness import RedisDecider
from tests.streams import HOUR, MIN, mismatches

NOON = 472_223 * HOUR + 12 * HOUR  # 12:00, a tile boundary


@pytest.fixture
def clients(redis_url: str, client: Client) -> Iterator[list[Client]]:
    """Two clients on an empty Redis (two workers)."""
    made = [connect(redis_url) for _ in range(2)]
    yield made
    for c in made:
        c.close()


def in_turns(clients: Sequence[Client], features: list[Any], lateness: str,
             steps: list[tuple[int, dict[str, Any]]]) -> list[Decision]:
    """Two workers decide `steps` (time, fields) in turns on an empty Redis; every event
    equals the oracle's answer."""
    clients[0].flushall()
    workers = [RedisDecider(c, features, lateness) for c in clients]
    oracle = Oracle(features, parse_duration(lateness))
    out = []
    for i, (t, fields) in enumerate(steps):
        event = {"event_id": f"e{i}", "timestamp": t, **fields}
        got = workers[i % 2].evaluate("s", copy.deepcopy(event))
        found = mismatches(i, event, oracle.feed(copy.deepcopy(event)), got)
        assert not found, found[0][1]
        out.append(got)
    return out


def test_a_lagging_source_on_an_idle_key_is_late(clients: list[Client]) -> None:
    """Key K at 12:00; other keys move G to 13:10; K's event stamped 12:58 is late
    (12:58 < G − L = 13:05), read above G − L − W = 12:05 (the 12:00 event is out) and
    stored nowhere; K is not forgotten for it, it is simply behind the clock."""
    count = "count(a.history,1h)"
    got = in_turns(clients, [count, "sum(v#a.history,1h)"], "5m", [
        (NOON, {"a": "K", "v": 1}),
        (NOON + 70 * MIN, {"a": "other", "v": 2}),
        (NOON + 58 * MIN, {"a": "K", "v": 4}),
        (NOON + 66 * MIN, {"a": "K", "v": 8}),      # on time: (12:06, 13:06]
        (NOON + 65 * MIN, {"a": "K", "v": 16}),     # t = G − L: on time, exact
    ])
    assert [d.late for d in got] == [False, False, True, False, False]
    assert [d.features[count] for d in got] == [1, 1, 1, 1, 1]
    assert got[2].features["sum(v#a.history,1h)"] == 4.0
    # within L of the clock the same key is on time and exact
    got = in_turns(clients, [count], "5m", [
        (NOON, {"a": "J"}), (NOON + 63 * MIN, {"a": "other"}), (NOON + 58 * MIN, {"a": "J"})])
    assert not got[2].late and got[2].features[count] == 2


def test_ties_at_the_watermark_and_the_floor(clients: list[Client]) -> None:
    """t = G − L is on time; t = G − L − 1 is late; the late floor G − L − W is
    exclusive."""
    count = "count(a.history,1s)"
    got = in_turns(clients, [count], "10ms", [
        (5001, {"a": "k"}),
        (6010, {"a": "other"}),
        (6000, {"a": "k"}),      # = G − L: on time, (5000, 6000]
        (5999, {"a": "k"}),      # late; floor 5000: 5001 is in, 6000 is later than t
        (5000, {"a": "k"}),      # late; floor 5000 exclusive: only itself
        (6010, {"a": "k"}),      # on time, (5010, 6010]: 6000 (5001 is out)
    ])
    assert [d.late for d in got] == [False, False, False, True, True, False]
    assert [d.features[count] for d in got] == [1, 1, 2, 2, 1, 2]


def test_late_events_on_tiled_windows_read_whole_tiles_above_the_floor(
        clients: list[Client]) -> None:
    tiled = {"name": "tiled", "func": "count", "by": ["a"], "window": "2h",
             "kind": "window", "hop": "1h"}
    tiled_sum = {"name": "tiled_sum", "func": "sum", "target": "v", "by": ["a"],
                 "window": "2h", "kind": "window", "hop": "1h"}
    got = in_turns(clients, [tiled, tiled_sum, "count(a.history,2h)"], "1m", [
        (NOON + 50 * MIN, {"a": "k", "v": 1}),
        (NOON + 70 * MIN, {"a": "k", "v": 2}),
        (NOON + 3 * HOUR, {"a": "z", "v": 0}),    # G = 15:00, floor tile of 12:59: 12h
        # late: tiles 12h..12h (its own, whole: the 12:50 event though later), not 13h
        (NOON + 40 * MIN, {"a": "k", "v": 4}),
        (NOON + 4 * HOUR, {"a": "z", "v": 0}),    # G = 16:00, floor tile of 13:59: 13h
        # late: its own tile 13h holds 13:10; tile 12h is under the floor
        (NOON + 90 * MIN, {"a": "k", "v": 8}),
    ])
    assert [d.late for d in got] == [False, False, False, True, False, True]
    assert [(d.features["tiled"], d.features["tiled_sum"]) for d in got[3::2]] == [
        (2, 5.0), (2, 10.0)]
    assert got[3].features["count(a.history,2h)"] == 1  # history: above 12:59 only itself


def test_a_duplicate_with_a_later_time_does_not_move_the_clock(
        redis_url: str, clients: list[Client]) -> None:
    """A duplicate changes nothing. On one server it is found before the clock step (in
    the same atomic call) and takes no LSN; on a cluster its step raised G, G is put
    back, and its LSN is a gap."""
    count = "count(a.history,1h)"
    workers = [RedisDecider(c, [count], "0ms") for c in clients]
    first = workers[0].evaluate("s", {"event_id": "x", "timestamp": NOON, "a": "k"})
    again = workers[1].evaluate("s", {"event_id": "x", "timestamp": NOON + HOUR, "a": "k"})
    assert (again.features, again.late, again.lsn) == (first.features, False, first.lsn)
    after = workers[0].evaluate("s", {"event_id": "y", "timestamp": NOON + MIN, "a": "k"})
    assert not after.late and after.features[count] == 2  # G is still 12:00
    assert workers[1].features.read_clock() == NOON + MIN
    assert after.lsn == (3 if redis_url.startswith("redis+cluster") else 2)


def test_patterns_take_lateness_from_the_scene_clock(redis_url: str,
                                                     clients: list[Client]) -> None:
    """An event behind the clock by more than L is late for the patterns too, though its
    own key's newest event is older: it reads them and changes nothing. A key is
    forgotten by the clock after the event. Two workers in turns answer as the in-memory
    engine, and as written out here."""
    workers = [Engine.from_config(EXAMPLE, state=RedisState.connect(
        redis_url, state_timeout_ms=60_000, guard_depth=2)) for _ in range(2)]
    memory = Engine.from_config(EXAMPLE)
    steps = [
        ("A", "login", 0), ("A", "auth_fail", 10), ("B", "view", 200),
        ("A", "auth_fail", 30),     # late (30 < 200 − 60): not stored
        ("A", "auth_fail", 150),    # on time: login, 10, itself: two failures
        ("A", "auth_fail", 160),    # the third
        ("C", "withdraw", 300), ("B", "view", 1000),
        ("C", "confirm", 500),      # late: closes nothing
        ("C", "view", 950),         # on time: the 300 deadline (900) passed: fires
        ("D", "withdraw", 1000), ("B", "view", 2000),
        ("D", "view", 2300),        # raises G to 2300: D (1000 ≤ 2300 − 60 − 1200) is
    ]                               # forgotten before it is read: nothing fires
    try:
        got, expected = [], []
        for i, (account, kind, seconds) in enumerate(steps):
            event = {"event_id": f"p{i}", "timestamp": T0 + seconds * 1000,
                     "account": account, "kind": kind}
            decided = workers[i % 2].evaluate("account", event)
            got.append((decided.late, decided.features[SEQ], decided.features[ABS]))
            reference = memory.evaluate("account", event)
            expected.append((reference.late, reference.features[SEQ],
                             reference.features[ABS]))
    finally:
        for worker in workers:
            worker.close()
    assert got == expected
    assert [g[0] for g in got] == [False, False, False, True, False, False, False, False,
                                   True, False, False, False, False]
    assert [g[1] for g in got][3:6] == [False, False, True]
    assert [g[2] for g in got][8:10] == [False, True]
    assert got[-1][2] is False


# -- state of the older layout ----------------------------------------------------------

@pytest.mark.parametrize(("key", "kind"), [
    ("re:lsn", "string"), ("re:{transfer}:G", "string"), ("re:{clock}", "1"),
    ("re:{clock}", "2"), ("re:{clock}", "3")])
def test_state_of_an_older_layout_is_refused_at_start(redis_url: str, client: Client,
                                                      key: str, kind: str) -> None:
    """The per-key clocks (format 1) and the entries of value texts the script quantised
    (format 2) are not read."""
    if kind == "string":
        client.set(key, "1767225600000")
    else:
        client.hset(key, mapping={"format": kind, "lsn": "7"})
    for require_state in (True, False):  # refused even by an engine that may start degraded
        with pytest.raises(StateFormatError) as refused:
            Engine.from_config(None, state=RedisState.connect(redis_url,
                                                              require_state=require_state))
        message = str(refused.value)
        assert key in message and "re:*" in message and "another version" in message
    assert client.exists(key)  # nothing was touched


def test_fresh_and_current_state_are_accepted(redis_url: str, client: Client) -> None:
    first = Engine.from_config(None, state=RedisState.connect(redis_url))
    event = {"event_id": "a", "timestamp": NOON, "pay_account": "P", "rcv_account": "R",
             "amount": 1.0}
    try:
        assert first.evaluate("transfer", event).lsn == 1
    finally:
        first.close()
    assert client.hget("re:{clock}", "format") == b"4"
    # the state it wrote: accepted
    again = Engine.from_config(None, state=RedisState.connect(redis_url))
    try:
        assert again.evaluate("transfer", {**event, "event_id": "b"}).lsn == 2
    finally:
        again.close()


# -- the bucket count, fixed when the state is created ------------------------------------

def _engine(url: str) -> Engine:
    return Engine.from_config(None, state=RedisState.connect(url))


@pytest.fixture
def engines() -> Iterator[Callable[[str], Engine]]:
    """`_engine`, each engine it opens closed at the end of the test (a process each)."""
    made: list[Engine] = []

    def open_engine(url: str) -> Engine:
        made.append(_engine(url))
        return made[-1]

    yield open_engine
    for engine in made:
        engine.close()


def _transfer(event_id: str, minute: int) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": NOON + minute * MIN, "pay_account": "P",
            "rcv_account": "R", "amount": 1.0}


def _with_buckets(url: str, buckets: int) -> str:
    return f"{url}{'&' if '?' in url else '?'}buckets={buckets}"


def test_the_bucket_count_is_recorded_and_taken_by_later_processes(
        redis_url: str, client: Client, engines: Callable[[str], Engine]) -> None:
    """The first process on empty state records its count (``?buckets=`` of the URL);
    one started without a count takes it, so it finds the same entities: the payer's
    count goes on from 2 to 3 (with the default count it would start again at 1)."""
    first = engines(_with_buckets(redis_url, 16))
    assert first.evaluate("transfer", _transfer("a", 0)).lsn == 1
    assert first.evaluate("transfer", _transfer("b", 1)).features[
        "count(pay_account.history,1h)"] == 2
    assert client.hget("re:{clock}", "format") == b"4/b16"
    assert any(b"|pay_account|" in k and k.count(b"|") == 2
               and int(k.split(b"|")[2].split(b"}")[0]) < 16
               for k in client.scan_iter(match="re:{transfer|pay_account|*"))
    later = engines(redis_url)
    state = later.state
    assert isinstance(state, RedisState) and state._clock.buckets == 16
    assert later.evaluate("transfer", _transfer("c", 2)).features[
        "count(pay_account.history,1h)"] == 3


def test_another_bucket_count_is_refused_at_start(
        redis_url: str, client: Client, engines: Callable[[str], Engine]) -> None:
    """An entity's keys depend on the count: a process given another one than the
    state's is refused, naming both, and writes nothing; the default count is format
    ``4`` as before (state written before the count was recorded)."""
    engines(redis_url).evaluate("transfer", _transfer("a", 0))
    assert client.hget("re:{clock}", "format") == b"4"
    keys = sorted(client.scan_iter(match="re:*"))
    for url in (_with_buckets(redis_url, 64), _with_buckets(redis_url, 1)):
        with pytest.raises(StateFormatError) as refused:
            _engine(url)
        message = str(refused.value)
        assert "4,096 buckets" in message and "given" in message
        assert "buckets=4096" in message
    assert sorted(client.scan_iter(match="re:*")) == keys
    assert client.hget("re:{clock}", "format") == b"4"
    again = engines(_with_buckets(redis_url, 4096))  # the state's own count: accepted
    assert again.evaluate("transfer", _transfer("b", 1)).features[
        "count(pay_account.history,1h)"] == 2


def test_two_processes_creating_the_state_with_different_counts(client: Client) -> None:
    """On empty state the first to record its count wins; the other is refused at
    start, not left writing entities under another count."""
    first, second = SharedClock(client, buckets=32), SharedClock(client, buckets=8)
    first.check(["transfer"])
    with pytest.raises(StateFormatError, match="32 buckets"):
        second.check(["transfer"])
    assert first.buckets == 32 and client.hget("re:{clock}", "format") == b"4/b32"


@pytest.mark.parametrize("query", ["buckets=0", "buckets=x", "buckets=-3", "buckets=",
                                   f"buckets={(1 << 24) + 1}", "buckets=\u0663"])
def test_a_malformed_bucket_count_is_refused(standalone_url: str, query: str) -> None:
    with pytest.raises(StateUnavailableError, match="buckets must be a whole number"):
        RedisState.connect(f"{standalone_url}?{query}")
    with pytest.raises(RedisStateError, match="buckets must be a whole number"):
        SharedClock(connect(standalone_url), buckets=0)


def test_the_url_count_and_the_keyword_must_agree(standalone_url: str) -> None:
    with pytest.raises(StateUnavailableError, match="differ"):
        RedisState.connect(_with_buckets(standalone_url, 8), buckets=16)


def test_the_count_comes_back_after_the_state_was_flushed_under_a_running_process(
        redis_url: str, client: Client, engines: Callable[[str], Engine]) -> None:
    """A process keeps its count; its next clock step writes it again on empty state,
    so a process started after the flush takes it."""
    running = engines(_with_buckets(redis_url, 8))
    running.evaluate("transfer", _transfer("a", 0))
    client.flushall()
    running.evaluate("transfer", _transfer("b", 1))
    assert client.hget("re:{clock}", "format") == b"4/b8"
    with pytest.raises(StateFormatError):
        _engine(_with_buckets(redis_url, 4096))


def test_a_process_follows_a_count_recorded_again_after_the_state_was_emptied(
        redis_url: str, client: Client, engines: Callable[[str], Engine]) -> None:
    """P took 16 buckets from the state; the state is emptied and Q, started without a
    count, records the default. P's next clock step finds another format: that event
    is answered with the fallback and changes nothing, P checks again and takes Q's
    count, so both count the payer's events on the same keys from then on."""
    _engine(_with_buckets(redis_url, 16)).close()
    p = engines(redis_url)
    assert p.evaluate("transfer", _transfer("a0", 0)).lsn == 1
    client.flushall()
    q = engines(redis_url)
    count = "count(pay_account.history,1h)"
    assert q.evaluate("transfer", _transfer("a1", 1)).features[count] == 1
    refused = p.evaluate("transfer", _transfer("a2", 2))
    assert refused.degraded and refused.lsn == 0
    assert client.hget("re:{clock}", "format") == b"4"
    state = p.state
    assert isinstance(state, RedisState) and state._clock.buckets == 4096
    assert p.evaluate("transfer", _transfer("a3", 3)).features[count] == 2
    assert q.evaluate("transfer", _transfer("a4", 4)).features[count] == 3


def test_the_entity_view_follows_a_count_recorded_again_after_the_state_was_emptied(
        redis_url: str, client: Client, caplog: pytest.LogCaptureFixture,
        engines: Callable[[str], Engine]) -> None:
    """The read-only entity view (``GET /v1/entities/...``) checks the format with the
    clock it reads: P, which took 16 buckets, reads the payer where Q (the default
    count) counts it after the state was emptied, before P decides anything again, and
    says that it changed its count."""
    _engine(_with_buckets(redis_url, 16)).close()
    p = engines(redis_url)
    count = "count(pay_account.history,1h)"
    p.evaluate("transfer", _transfer("a0", 0))
    assert p.entity("transfer", "pay_account", "P")[1][count] == 1
    client.flushall()
    q = engines(redis_url)
    q.evaluate("transfer", _transfer("a1", 1))
    q.evaluate("transfer", _transfer("a2", 2))
    with caplog.at_level("WARNING", logger="riskengine.state"):
        as_of, found = p.entity("transfer", "pay_account", "P")
    assert (as_of, found[count]) == (NOON + 2 * MIN, 2)
    state = p.state
    assert isinstance(state, RedisState) and state._clock.buckets == 4096
    assert any("4,096 buckets" in r.getMessage() and "had 16" in r.getMessage()
               for r in caplog.records)


def test_the_entity_view_of_a_process_given_another_count_is_refused(
        redis_url: str, client: Client, engines: Callable[[str], Engine]) -> None:
    """The same with P given its count: its view names both counts instead of reading
    keys no process writes."""
    p = engines(_with_buckets(redis_url, 16))
    p.evaluate("transfer", _transfer("a0", 0))
    client.flushall()
    q = engines(redis_url)
    q.evaluate("transfer", _transfer("a1", 1))
    with pytest.raises(StateFormatError, match=r"4,096 buckets.*given 16"):
        p.entity("transfer", "pay_account", "P")


def test_the_entity_view_of_emptied_state_writes_nothing(redis_url: str, client: Client,
                                                         engines: Callable[[str], Engine]) -> None:
    """Emptied and not made again: the view reads no clock and no entity, and leaves
    the state empty (the format is recorded by the next event's clock step, not by a
    read)."""
    p = engines(_with_buckets(redis_url, 16))
    p.evaluate("transfer", _transfer("a0", 0))
    client.flushall()
    as_of, found = p.entity("transfer", "pay_account", "P")
    assert as_of is None and found["count(pay_account.history,1h)"] == 0
    assert client.dbsize() == 0


def test_a_process_given_another_count_stays_out_of_state_made_again(
        redis_url: str, client: Client, caplog: pytest.LogCaptureFixture,
        engines: Callable[[str], Engine]) -> None:
    """The same with P given its count (?buckets=16): P answers with the fallback, writes
    nothing, and says why once its breaker opens; Q's counts are untouched."""
    p = engines(_with_buckets(redis_url, 16))
    p.evaluate("transfer", _transfer("a0", 0))
    client.flushall()
    q = engines(redis_url)
    count = "count(pay_account.history,1h)"
    assert q.evaluate("transfer", _transfer("a1", 1)).features[count] == 1
    with caplog.at_level("ERROR", logger="riskengine.state"):
        for i in range(2, 8):
            assert p.evaluate("transfer", _transfer(f"a{i}", i)).degraded
    assert any("16" in r.getMessage() and "4,096 buckets" in r.getMessage()
               for r in caplog.records if r.levelname == "ERROR")
    assert q.evaluate("transfer", _transfer("a9", 9)).features[count] == 2
    assert client.hget("re:{clock}", "format") == b"4"


def test_scene_features_alone_check_the_state_again_after_a_refused_step(
        redis_url: str, client: Client) -> None:
    """`RedisSceneFeatures.compute` (the features without the decision path): the call
    that finds the state made again under another count raises, the next one has taken
    the new count and counts on the same keys as the process that made it."""
    from riskengine.config import load_config
    from riskengine.state.redis import RedisSceneFeatures
    from tests.streams import scene_config

    scene = load_config(scene_config(["count(a.history,1h)"], "5m")).scenes["s"]
    RedisSceneFeatures(client, scene, buckets=16)  # makes the state
    old = RedisSceneFeatures(client, scene)  # takes its count
    assert old.buckets == 16
    old.compute({"event_id": "e0", "timestamp": NOON, "a": "k"})
    client.flushall()
    new = RedisSceneFeatures(client, scene)
    assert new.compute({"event_id": "e1", "timestamp": NOON + 1, "a": "k"})[0] == {
        "count(a.history,1h)": 1}
    with pytest.raises(RedisStateError, match="another layout"):
        old.compute({"event_id": "e2", "timestamp": NOON + 2, "a": "k"})
    assert old.buckets == 4096
    assert old.compute({"event_id": "e3", "timestamp": NOON + 3, "a": "k"})[0] == {
        "count(a.history,1h)": 2}


@pytest.mark.parametrize("written", [b"4/b4096", b"4/b016", b"4/b", b"4/b16x"])
def test_a_format_this_version_does_not_write_is_refused(client: Client,
                                                         written: bytes) -> None:
    """The clock step compares the field as written: a count spelt another way (by hand)
    is refused at start, not taken and then refused at every event."""
    client.hset("re:{clock}", "format", written)
    with pytest.raises(StateFormatError):
        SharedClock(client).check(["transfer"])


def test_the_url_count_is_read_beside_other_parameters(standalone_url: str) -> None:
    from riskengine.state.redis.connect import state_options

    assert state_options("unix:///s.sock?db=2&buckets=8&x=1") == ("unix:///s.sock?db=2&x=1", 8)
    assert state_options("redis://:p@h:1/0?buckets=8") == ("redis://:p@h:1/0", 8)
    assert state_options("redis://h:1/0") == ("redis://h:1/0", None)
    with pytest.raises(RedisStateError, match="twice"):
        state_options("redis://h:1/0?buckets=8&buckets=8")
    state = RedisState.connect(f"{standalone_url}?buckets=8", buckets=None)
    assert state._clock.wanted == 8
    state.client.close()


# -- the one place a degraded event moves the clock --------------------------------------

def _fail_b_after_its_step(decider: RedisDecider, failing: str,
                           patch: pytest.MonkeyPatch) -> None:
    """Event b fails after its clock step (`failing`: the method of the state made to
    fail): it is answered with the fallback, but G has its time (riskengine/state/redis/
    backend.py says so)."""
    decider.evaluate("s", {"event_id": "a", "timestamp": NOON, "a": "k"})
    state = decider.features
    real = getattr(state, failing)

    def broken(*args: Any) -> Any:
        if failing == "run_calls":
            real(*args)  # it ran on the server; its reply is lost
        raise redis.exceptions.ConnectionError("the call fails")

    with patch.context() as inside:
        inside.setattr(state, failing, broken)
        degraded = decider.engine.evaluate("s", {"event_id": "b", "timestamp": NOON + HOUR,
                                                 "a": "k"})
    assert degraded.degraded and degraded.lsn == 0
    assert state.read_clock() == NOON + HOUR


def _late_behind_b(decider: RedisDecider) -> None:
    behind = decider.evaluate("s", {"event_id": "c", "timestamp": NOON + 50 * MIN, "a": "k"})
    assert behind.late  # 12:50 < 13:00 − 5m: late by the degraded event's time


def _retry_b(decider: RedisDecider) -> None:
    retried = decider.evaluate("s", {"event_id": "b", "timestamp": NOON + HOUR, "a": "k"})
    assert not retried.late and retried.features["count(a.history,1h)"] == 1


def test_a_degraded_event_whose_reply_was_lost_has_moved_the_clock(
        standalone_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """One server: the event's one call ran (clock step and entities) but its reply was
    lost; its retry is answered by the entity's guard record (counted once, not late)."""
    decider = RedisDecider(standalone_client, ["count(a.history,1h)"], "5m")
    _fail_b_after_its_step(decider, "run_calls", monkeypatch)
    _retry_b(decider)
    _late_behind_b(decider)


def test_a_degraded_event_after_its_clock_step_has_moved_the_clock(
        cluster_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster: the entity calls fail after the clock step; its retry is decided
    normally (not late by its own doing: its time is at most G)."""
    client = connect(cluster_url)
    try:
        client.flushall()
        decider = RedisDecider(client, ["count(a.history,1h)"], "5m")
        _fail_b_after_its_step(decider, "entity_calls", monkeypatch)
        _late_behind_b(decider)
        _retry_b(decider)
    finally:
        client.close()


# -- one clock per partition of a stream worker --------------------------------------------

def test_each_partition_has_its_own_clock_and_keys_go_by_the_slowest(
        clients: list[Client]) -> None:
    """A stream worker's partitions each keep a scene clock in Redis: partition "b" far
    ahead makes nothing of partition "a" late, and a key that "a" can still read is not
    forgotten by "b"'s clock, even when "b" touches it (keys may span partitions)."""
    config = {"scenes": {"s": {"lateness": "5m",
                               "features": ["count(k.history,1h)"]}}}
    workers = [Engine.from_config(config, state=RedisState(c, state_timeout_ms=60_000))
               for c in clients]
    name = "count(k.history,1h)"
    try:
        def send(worker: int, event_id: str, t: int, key: str, part: str) -> Decision:
            return workers[worker].evaluate(
                "s", {"event_id": event_id, "timestamp": t, "k": key}, clock=("ev", part))

        first = send(0, "a1", NOON, "K", "a")
        ahead = send(1, "b1", NOON + 10 * HOUR, "other", "b")   # b's clock: 22:00
        shared = send(1, "b2", NOON + 10 * HOUR, "K", "b")      # b touches K: not late
        lagging = send(0, "a2", NOON + 30 * MIN, "K", "a")      # a's clock: 12:00
        assert not any(d.late for d in (first, ahead, shared, lagging))
        assert shared.features[name] == 1     # (21:00, 22:00]: only itself
        assert lagging.features[name] == 2    # 12:00 is still kept: a is slower
        single = send(0, "c1", NOON + 31 * MIN, "K", None)  # the one clock of the scene
        assert not single.late
    finally:
        for worker in workers:
            worker.close()
