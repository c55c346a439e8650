"""Batches, remembered decisions and the life of key state (eviction, size bound)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from riskengine import Engine
from riskengine.decision import Decision

TS = 1_700_000_000_000
MIN = 60_000

SCENE: dict[str, Any] = {
    "lateness": "5m",
    "features": [
        "count(pay_account.history,1h)",
        "sum(amount#rcv_account.history,1h)",
        "count_distinct(rcv_account#pay_account.history,1h)",
        {"name": "big_10m", "func": "count", "by": ["pay_account"], "window": "10m",
         "where": "amount > 500"},
        {"name": "pair_2h", "func": "count", "by": ["pay_account", "rcv_account"],
         "window": "2h", "kind": "window", "hop": "30m"},
        {"name": "max_1h", "func": "max", "target": "amount", "by": ["rcv_account"],
         "window": "1h"},
    ],
    "rules": [{"id": "busy", "when": 'features["count(pay_account.history,1h)"] > 3',
               "score": 60}],
    "policy": {"review_at": 50, "reject_at": 80},
}


def config(**extra: Any) -> dict[str, Any]:
    return {"scenes": {"s": {**SCENE, **extra}}}


def stream(seed: int, n: int) -> list[dict[str, Any]]:
    """Hot and cold keys, disorder within and beyond the lateness, duplicate ids."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    t = TS
    for i in range(n):
        if events and rng.random() < 0.08:
            events.append(dict(rng.choice(events)))
            continue
        t += rng.choice([0, 1, 1000, 20_000, 3 * MIN, 40 * MIN])
        skew = rng.choice([0, 0, 0, -30_000, -4 * MIN, -6 * MIN, -50 * MIN])
        events.append({
            "event_id": f"e{i}", "timestamp": max(TS, t + skew),
            "pay_account": rng.choice(["A", "A", "B", f"c{i % 40}", None]),
            "rcv_account": rng.choice(["M", "M", "N", f"r{i % 60}"]),
            "amount": rng.choice([None, 1, 10.5, 700, 1000.0, 0.1]),
        })
    return events


def view(d: Decision) -> dict[str, Any]:
    out = d.to_dict()
    del out["latency_ms"]
    return out


def test_evaluate_many_decides_exactly_like_evaluate() -> None:
    events = stream(1, 1500)
    one = Engine.from_config(config())
    expected = [view(one.evaluate("s", dict(e))) for e in events]
    many = Engine.from_config(config())
    got: list[dict[str, Any]] = []
    for start in range(0, len(events), 97):
        got += [view(d) for d in many.evaluate_many("s", [dict(e) for e in
                                                        events[start:start + 97]])]
    assert got == expected
    assert any(v["late"] for v in expected)
    assert one.stats() == many.stats()


def test_an_old_duplicate_gets_an_equal_decision_and_changes_nothing() -> None:
    engine = Engine.from_config(config())
    first = engine.evaluate("s", {"event_id": "x", "timestamp": TS, "pay_account": "A",
                                  "rcv_account": "M", "amount": 1000.0})
    for i in range(300):  # far more than the decisions kept whole
        engine.evaluate("s", {"event_id": f"y{i}", "timestamp": TS + i, "pay_account": "B",
                              "rcv_account": "N", "amount": 1.0})
    lsn, stats = engine.lsn, engine.stats()
    again = engine.evaluate("s", {"event_id": "x", "timestamp": TS + 5, "pay_account": "A",
                                  "rcv_account": "M", "amount": 1.0})
    assert again == replace(first, duplicate=True)
    assert (engine.lsn, engine.stats()) == (lsn, stats)


def test_remembered_decisions_survive_a_snapshot(tmp_path: Path) -> None:
    engine = Engine.from_config(config())
    rng = random.Random(2)
    decisions = [engine.evaluate("s", {"event_id": f"e{i}", "timestamp": TS + i * 1000,
                                       "pay_account": rng.choice("AB"),
                                       "rcv_account": rng.choice("MN"), "amount": 700})
                 for i in range(200)]
    path = engine.snapshot(tmp_path / "state.snap")
    restored = Engine.from_config(config()).restore(path)
    for d in decisions:
        again = restored.evaluate("s", {"event_id": d.event_id, "timestamp": TS})
        assert again == replace(d, duplicate=True)
    assert restored.lsn == engine.lsn
    assert {d.decision for d in decisions} == {"accept", "review"}


def test_idle_keys_are_evicted_as_the_clock_moves() -> None:
    engine = Engine.from_config(config())
    for i in range(2000):
        engine.evaluate("s", {"timestamp": TS + i, "pay_account": f"p{i}",
                              "rcv_account": f"r{i}", "amount": 1.0})
    assert engine.stats()["s"]["entities"] >= 6000
    t = TS + 2 * 60 * MIN + 5 * MIN  # past lateness + the largest window of every key
    for i in range(50):
        engine.evaluate("s", {"timestamp": t + i * MIN, "pay_account": "A",
                              "rcv_account": "M", "amount": 1.0})
    stats = engine.stats()["s"]
    assert stats["entities"] <= 10
    assert stats["evicted_for_size"] == 0


def test_max_entities_bounds_every_key_table() -> None:
    engine = Engine.from_config(config(max_entities=100))
    for i in range(1000):
        engine.evaluate("s", {"timestamp": TS + i * 1000, "pay_account": f"p{i}",
                              "rcv_account": f"r{i}", "amount": 1.0})
    stats = engine.stats()["s"]
    assert stats["entities"] <= 3 * 100
    assert stats["evicted_for_size"] >= 3 * 800
    recent = engine.evaluate("s", {"timestamp": TS + 1_000_000, "pay_account": "p999",
                                   "rcv_account": "x", "amount": 1.0})
    assert recent.features["count(pay_account.history,1h)"] == 2  # the newest keys stay


def test_max_entities_marks_the_events_an_eviction_could_affect() -> None:
    """An eviction for size inside the horizon never leaves a silent partial window:
    while an evicted key could still be read, an event that starts a key afresh is
    marked degraded (and stored, as usual); keys still held, and new keys once the clock
    has passed the evicted key's horizon, are not."""
    features = ["count(pay_account.history,1h)"]
    engine = Engine.from_config({"scenes": {"s": {"lateness": "5m", "features": features,
                                                  "max_entities": 256}}})
    name = features[0]
    for i in range(400):  # 400 keys in 400 s: the oldest are evicted while still live
        d = engine.evaluate("s", {"timestamp": TS + i * 1000, "pay_account": f"p{i}"})
        assert d.features[name] == 1
    assert engine.stats()["s"]["evicted_for_size"] > 0
    # a key started before any eviction, still held: exact, not marked
    held = engine.evaluate("s", {"timestamp": TS + 400_000, "pay_account": "p200"})
    assert held.features[name] == 2 and not held.degraded and not held.fallback
    # one started while evicted keys could be read cannot be told from one of them
    late_born = engine.evaluate("s", {"timestamp": TS + 400_000, "pay_account": "p399"})
    assert late_born.features[name] == 2 and late_born.degraded
    evicted = engine.evaluate("s", {"timestamp": TS + 401_000, "pay_account": "p0"})
    assert evicted.features[name] == 1 and evicted.degraded and not evicted.fallback
    assert not evicted.late
    # every later event of the key started afresh is marked too while p0's old events
    # could be in its windows (here: 1 instead of the exact 3)
    again = engine.evaluate("s", {"timestamp": TS + 401_500, "pay_account": "p0"})
    assert again.features[name] == 2 and again.degraded
    fresh = engine.evaluate("s", {"timestamp": TS + 402_000, "pay_account": "new"})
    assert fresh.degraded  # it cannot be told from an evicted key
    # Past L + W after the newest eviction, no evicted key can be read any more.
    later = TS + 400_000 + 5 * MIN + 60 * MIN
    after = engine.evaluate("s", {"timestamp": later, "pay_account": "p1"})
    assert after.features[name] == 1 and not after.degraded
    again = engine.evaluate("s", {"timestamp": later + 1, "pay_account": "p1"})
    assert again.features[name] == 2 and not again.degraded


def test_max_entities_does_not_mark_anything_while_it_evicts_only_idle_keys() -> None:
    engine = Engine.from_config({"scenes": {"s": {
        "lateness": "1m", "features": ["count(pay_account.history,1m)"],
        "max_entities": 256}}})
    marked = 0
    for i in range(2000):  # one new key every 10 s: never 256 live at once
        d = engine.evaluate("s", {"timestamp": TS + i * 10_000, "pay_account": f"p{i}"})
        marked += d.degraded
    assert marked == 0 and engine.stats()["s"]["evicted_for_size"] == 0


def test_each_clock_domain_has_its_own_state() -> None:
    """A partition's state is its own (keys, ids, clock): one that goes away takes it all,
    and a rebuild from the start of its log then counts nothing twice; an idle partition
    holds no other partition's memory back."""
    features = ["count(pay_account.history,1h)"]
    config = {"scenes": {"s": {"lateness": "5m", "features": features, "idempotency_max": 5}}}
    name = features[0]
    events = [{"event_id": f"a{i}", "timestamp": TS + i * 1000, "pay_account": "A"}
              for i in range(20)]
    engine = Engine.from_config(config)
    for event in events:
        engine.evaluate("s", dict(event), clock="p")
    engine.drop_clock("p")
    assert engine.stats()["s"]["entities"] == 0
    for event in events:  # the partition back: rebuilt from the start of its log
        engine.evaluate("s", dict(event), clock="p")
    after = engine.evaluate("s", {"event_id": "x", "timestamp": TS + 20_000,
                                  "pay_account": "A"}, clock="p")
    assert after.features[name] == 21
    # a partition that went quiet frees nothing of the busy one's and pins nothing
    engine = Engine.from_config(config)
    engine.evaluate("s", {"timestamp": TS, "pay_account": "quiet"}, clock="idle")
    for i in range(3000):
        engine.evaluate("s", {"timestamp": TS + i * 60_000, "pay_account": f"k{i}"},
                        clock="busy")
    assert engine.stats()["s"]["entities"] < 200  # about 65 min of keys, plus "quiet"
    quiet = engine.evaluate("s", {"timestamp": TS + 1000, "pay_account": "quiet"},
                            clock="idle")
    assert quiet.features[name] == 2 and not quiet.late


def test_lists_put_in_use_reach_the_fast_path_too() -> None:
    from riskengine.lists import ListStore

    config = {"scenes": {"s": {"features": [{"name": "vip_n", "func": "count",
                                              "by": ["acct"], "window": "1h",
                                              "where": "in_list('vip', acct)"}]}},
              "lists": {"vip": {"values": ["a"]}}}
    engine = Engine.from_config(config)
    assert engine.evaluate("s", {"timestamp": TS, "acct": "a"}).features["vip_n"] == 1
    engine.use_lists(ListStore.from_config({"vip": {"values": ["b"]}}, None))
    # in order (the generated fast path) and out of order (the general path) alike
    assert engine.evaluate("s", {"timestamp": TS + 1, "acct": "a"}).features["vip_n"] == 1
    assert engine.evaluate("s", {"timestamp": TS + 2, "acct": "b"}).features["vip_n"] == 1
    # out of order for "a": its stored event counts, itself no more (the old lists: 2)
    assert engine.evaluate("s", {"timestamp": TS, "acct": "a"}).features["vip_n"] == 1
