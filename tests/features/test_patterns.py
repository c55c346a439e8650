"""Sequence patterns (riskengine/patterns.py): the semantics on hand-made streams, an
oracle written from the definitions on random streams, config errors, snapshots, and the
same answers from the engine, `riskengine replay` and the service."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from riskengine.cli import app
from riskengine.engine import Engine
from riskengine.exceptions import ConfigError, RuleCompileError
from riskengine.service.app import create_app
from riskengine.service.settings import ServiceSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "riskengine" / "examples" / "patterns.yaml"
T0 = 1_700_000_000_000
SEQ = "pattern:login_then_3_auth_fails"
ABS = "pattern:withdrawal_unconfirmed"


def scene(patterns: list[dict[str, Any]], lateness: str = "1m") -> dict[str, Any]:
    return {"scenes": {"s": {
        "lateness": lateness,
        "schema": {"account": "str?", "kind": "str"},
        "features": [{"name": "n", "func": "count", "by": ["account"], "window": "1h"}],
        "patterns": patterns}}}


def feed(engine: Engine, steps: list[tuple[str, float]], account: str | None = "A",
         scene_name: str = "account", prefix: str = "e") -> list[dict[str, Any]]:
    out = []
    for i, (kind, seconds) in enumerate(steps):
        event = {"event_id": f"{prefix}{i}", "timestamp": T0 + int(seconds * 1000),
                 "account": account, "kind": kind}
        out.append(engine.evaluate(scene_name, event).features)
    return out


def test_a_sequence_completes_at_the_third_failure_and_stays_true_after() -> None:
    engine = Engine.from_config(EXAMPLE)
    got = feed(engine, [("login", 0), ("auth_fail", 10), ("other", 15), ("auth_fail", 20),
                        ("auth_fail", 30), ("auth_fail", 40)])
    assert [f[SEQ] for f in got] == [False, False, False, False, True, True]
    decision = engine.evaluate("account", {"event_id": "x", "timestamp": T0 + 50_000,
                                           "account": "A", "kind": "auth_fail"})
    assert decision.decision == "reject" and decision.hits[0].rule_id == "takeover_attempt"


def test_a_sequence_needs_its_order_its_window_and_its_key() -> None:
    engine = Engine.from_config(EXAMPLE)
    # failures before the login do not count
    assert [f[SEQ] for f in feed(engine, [("auth_fail", 0), ("auth_fail", 1), ("login", 2),
                                          ("auth_fail", 3)], account="B")][-1] is False
    # the login exactly 5 minutes before the third failure is out of the window (each
    # account on an engine of its own: their times start again, the scene clock would not)
    got = feed(Engine.from_config(EXAMPLE), [("login", 0), ("auth_fail", 100), ("auth_fail", 200),
                        ("auth_fail", 300)], account="C", prefix="c")
    assert got[-1][SEQ] is False
    got = feed(Engine.from_config(EXAMPLE), [("login", 0.001), ("auth_fail", 100),
                                             ("auth_fail", 200), ("auth_fail", 300)],
               account="D", prefix="d")
    assert got[-1][SEQ] is True
    # another account's login does not help
    engine = Engine.from_config(EXAMPLE)
    feed(engine, [("login", 0)], account="E", prefix="e1-")
    assert feed(engine, [("auth_fail", 1), ("auth_fail", 2), ("auth_fail", 3)],
                account="F", prefix="f")[-1][SEQ] is False
    # a null key: False, and nothing stored
    nullable = Engine.from_config(scene([{
        "name": "p", "by": ["account"], "within": "5m",
        "steps": ["kind == 'login'", {"when": "kind == 'auth_fail'", "times": 3}]}]))
    got = feed(nullable, [("login", 0), ("auth_fail", 1), ("auth_fail", 2), ("auth_fail", 3)],
               account=None, scene_name="s")
    assert [f["pattern:p"] for f in got] == [False] * 4
    assert nullable.stats()["s"]["pattern_keys"] == 0


def test_an_absence_fires_once_past_the_deadline_unless_confirmed_in_time() -> None:
    engine = Engine.from_config(EXAMPLE)
    got = feed(engine, [("withdraw", 0), ("other", 600), ("other", 601), ("other", 700)])
    assert [f[ABS] for f in got] == [False, False, True, False]  # once, past 600 s
    got = feed(Engine.from_config(EXAMPLE), [("withdraw", 0), ("confirm", 600),
                                             ("other", 1000)], account="G", prefix="g")
    # confirmed exactly at the deadline: in time
    assert [f[ABS] for f in got] == [False, False, False]
    got = feed(Engine.from_config(EXAMPLE), [("withdraw", 0), ("confirm", 600.001),
                                             ("other", 1000)], account="H", prefix="h")
    # the confirmation itself observes the miss
    assert [f[ABS] for f in got] == [False, True, False]
    got = feed(Engine.from_config(EXAMPLE), [("withdraw", 0), ("withdraw", 300),
                                             ("confirm", 500), ("other", 1200)],
               account="I", prefix="i")
    assert [f[ABS] for f in got] == [False, False, False, False]  # one confirm closes both


def test_late_events_and_duplicates_change_no_pattern_state() -> None:
    engine = Engine.from_config(EXAMPLE)
    feed(engine, [("login", 600), ("auth_fail", 610), ("auth_fail", 620)])
    late = engine.evaluate("account", {"event_id": "late", "timestamp": T0 + 500_000,
                                       "account": "A", "kind": "auth_fail"})
    assert late.late and late.features[SEQ] is False  # 2 minutes behind the clock: late
    again = engine.evaluate("account", {"event_id": "e2", "timestamp": T0 + 620_000,
                                        "account": "A", "kind": "auth_fail"})  # a duplicate
    assert again.features[SEQ] is False
    third = engine.evaluate("account", {"event_id": "t3", "timestamp": T0 + 630_000,
                                        "account": "A", "kind": "auth_fail"})
    assert third.features[SEQ] is True  # exactly the third: the late one and the retry did
    fourth = Engine.from_config(EXAMPLE)  # not count; without them the same answer
    feed(fourth, [("login", 600), ("auth_fail", 610), ("auth_fail", 620)])
    assert fourth.evaluate("account", {"event_id": "t3", "timestamp": T0 + 630_000,
                                       "account": "A", "kind": "auth_fail"}
                           ).features[SEQ] is True


def test_an_idle_key_is_forgotten_by_the_scene_clock() -> None:
    engine = Engine.from_config(EXAMPLE)
    feed(engine, [("withdraw", 0)])
    # other accounts move the clock past 2 x 10 m + 1 m after the withdrawal
    feed(engine, [("other", 1261)], account="Z", prefix="z")
    assert feed(engine, [("other", 1262)], prefix="late-")[0][ABS] is False


def test_a_snapshot_keeps_pattern_state(tmp_path: Path) -> None:
    steps = [("login", 0), ("auth_fail", 10), ("withdraw", 20), ("auth_fail", 30),
             ("auth_fail", 40), ("other", 700)]
    whole = feed(Engine.from_config(EXAMPLE), steps)
    first = Engine.from_config(EXAMPLE)
    feed(first, steps[:3])
    first.snapshot(tmp_path / "s.pkl")
    second = Engine.from_config(EXAMPLE).restore(tmp_path / "s.pkl")
    rest = []
    for i, (kind, seconds) in enumerate(steps[3:], start=3):
        rest.append(second.evaluate("account", {
            "event_id": f"e{i}", "timestamp": T0 + int(seconds * 1000), "account": "A",
            "kind": kind}).features)
    assert rest == whole[3:]
    assert second.stats()["account"]["pattern_keys"] == 1


@pytest.mark.parametrize(("patterns", "message"), [
    ([{"name": "p", "by": ["account"], "within": "5m"}], "give steps"),
    ([{"name": "p", "by": ["account"], "steps": [], "within": "5m"}], "1 to 20 steps"),
    ([{"name": "p", "by": ["account"], "steps": ["kind == 'a'"]}], "within"),
    ([{"name": "p", "by": ["account"], "steps": ["kind == 'a'"], "within": "0s"}],
     "positive"),
    ([{"name": "p", "by": [], "steps": ["kind == 'a'"], "within": "5m"}], "by must"),
    ([{"name": "p p", "by": ["account"], "steps": ["kind == 'a'"], "within": "5m"}], "name"),
    ([{"name": "p", "by": ["account"], "steps": [{"when": "kind == 'a'", "times": 0}],
       "within": "5m"}], "times"),
    ([{"name": "p", "by": ["account"], "steps": ["kind == 'a'"], "within": "5m",
       "first": "x"}], "unknown keys"),
    ([{"name": "p", "by": ["account"], "steps": ["kind == 'a'"], "within": "5m"},
      {"name": "p", "by": ["account"], "steps": ["kind == 'b'"], "within": "5m"}],
     "two patterns"),
    ("p", "must be a list"),
])
def test_invalid_patterns_are_refused_at_load(patterns: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Engine.from_config(scene(patterns))


def test_a_bad_step_expression_and_an_unknown_pattern_in_a_rule_are_refused() -> None:
    with pytest.raises(RuleCompileError, match="pattern 'p' step 1"):
        Engine.from_config(scene([{"name": "p", "by": ["account"],
                                   "steps": ["__import__('os')"], "within": "5m"}]))
    config = scene([{"name": "p", "by": ["account"], "steps": ["kind == 'a'"],
                     "within": "5m"}])
    config["scenes"]["s"]["rules"] = [{"id": "r", "when": "pattern('q')", "action": "reject"}]
    with pytest.raises(RuleCompileError, match="q"):
        Engine.from_config(config)


# -- an oracle from the definitions ------------------------------------------------------

def _oracle(events: list[tuple[str, str, int]], within: int, times: int
            ) -> list[tuple[bool, bool]]:
    """(sequence, absence) per event, by brute force over every stored event; events are
    (account, kind, t) in arrival order, none late (times never go back past lateness)."""
    out: list[tuple[bool, bool]] = []
    stored: list[tuple[str, str, int, int]] = []  # account, kind, t, arrival
    fired: set[int] = set()
    for n, (account, kind, t) in enumerate(events):
        mine = [x for x in stored if x[0] == account]
        seq = False
        if kind == "fail":
            window = sorted((x for x in mine if t - within < x[2] <= t),
                            key=lambda x: (x[2], x[3]))
            kinds = [x[1] for x in window]
            for login in range(len(kinds)):
                if kinds[login] != "login":
                    continue
                later = [i for i in range(login + 1, len(kinds)) if kinds[i] == "fail"]
                if len(later) >= times - 1:
                    seq = True
        absent = False
        for a in mine:
            if a[1] != "withdraw" or a[3] in fired or not a[2] + within < t:
                continue
            closed = any(b[1] == "confirm" and b[3] > a[3] and a[2] < b[2] <= a[2] + within
                         for b in mine)
            if not closed:
                absent = True
                fired.add(a[3])
        # an open deadline closed by this very event does not fire
        if kind == "confirm":
            for a in mine:
                if a[1] == "withdraw" and a[2] < t <= a[2] + within:
                    fired.add(a[3])
        out.append((seq, absent))
        stored.append((account, kind, t, n))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("AB"),
                          st.sampled_from(["login", "fail", "withdraw", "confirm", "x"]),
                          st.integers(min_value=-20, max_value=60)), max_size=40),
       st.integers(min_value=1, max_value=3))
def test_patterns_match_the_oracle(steps: list[tuple[str, str, int]], times: int) -> None:
    within = 60_000
    config = scene([
        {"name": "seq", "by": ["account"], "within": within,
         "steps": ["kind == 'login'", {"when": "kind == 'fail'", "times": times}]},
        {"name": "gap", "by": ["account"], "within": within, "first": "kind == 'withdraw'",
         "not_followed_by": "kind == 'confirm'"}], lateness="10m")
    engine = Engine.from_config(config)
    events, t = [], T0
    for account, kind, step in steps:  # small jumps forward and back, within lateness
        t = max(T0, t + step * 1000)
        events.append((account, kind, t))
    got = []
    for i, (account, kind, t) in enumerate(events):
        f = engine.evaluate("s", {"event_id": f"e{i}", "timestamp": t, "account": account,
                                  "kind": kind}).features
        got.append((f["pattern:seq"], f["pattern:gap"]))
    assert got == _oracle(events, within, times)


# -- the same answers everywhere ----------------------------------------------------------

def _traffic(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    kinds = ["login", "auth_fail", "auth_fail", "withdraw", "confirm", "view"]
    t = T0
    out = []
    for i in range(n):
        t += rng.randint(0, 20_000) + (15 * 60_000 if i % 50 == 49 else 0)
        out.append({"event_id": f"ev{i}", "timestamp": t, "account": f"acct{rng.randint(1, 3)}",
                    "kind": rng.choice(kinds), "amount": round(rng.uniform(1, 900), 2)})
    return out


def _view(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["event_id"], d["decision"], d.get("features", {}).get(SEQ),
            d.get("features", {}).get(ABS))


def test_engine_replay_and_service_give_the_same_pattern_answers(tmp_path: Path) -> None:
    events = _traffic(400, seed=3)
    engine = Engine.from_config(EXAMPLE)
    expected = [_view(engine.evaluate("account", e).to_dict()) for e in events]
    assert any(v[2] for v in expected) and any(v[3] for v in expected)

    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    output = tmp_path / "decisions.jsonl"
    result = CliRunner().invoke(app, ["replay", str(source), "--output", str(output),
                                      "--config", str(EXAMPLE), "--scene", "account"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    replayed = [json.loads(line) for line in output.read_text().splitlines()]
    assert [_view(d) for d in replayed] == expected

    settings_ = ServiceSettings(config=EXAMPLE, state_dir=tmp_path / "state",
                                admin_token="a" * 32, watch_config=False)
    with TestClient(create_app(settings_)) as client:
        served = [_view(client.post("/v1/account/evaluate", json=e).json()) for e in events]
    assert served == expected
