"""`riskengine replay` writes, byte for byte, what the json module's reading and writing
give: the decisions and the errors file, on input built to find where orjson differs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from riskengine.batch.replay import decision_record
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from tests.batch.json_reference import json_events, json_line
from tests.cli.clitools import run

T0 = 1_767_571_200_000

CONFIG: dict[str, Any] = {"scenes": {"t": {
    "lateness": "5m",
    "features": [
        "sum(amount#acct.history,1h)",
        "avg(amount#acct.history,1h)",
        "count(acct.history,1h)",
        {"name": "last_note", "func": "last", "target": "note", "by": ["acct"],
         "window": "1h"},
        {"name": "first_note", "func": "first", "target": "note", "by": ["acct"],
         "window": "1h"},
    ],
    "rules": [{"id": "tiny", "when": "amount > 0", "score": 0.00001},
              {"id": "negative", "when": "amount > 5", "score": -0.000002}],
}}}

NOTES: list[Any] = [
    "plain", 2**70, -(2**65), 1e-05, -2.5e-07, 1e16, 0.0, [1e-05, 2**64], {"k": 1e-9},
    "\u2028\x00\u20ac\U0001f600", None,
]


def line(i: int, **fields: Any) -> bytes:
    event = {"event_id": f"e{i}", "timestamp": T0 + i * 1_000, "acct": f"a{i % 3}",
             "amount": 0.000001 * (i % 4)}
    event.update(fields)
    return json.dumps(event).encode("utf-8")


def hostile_input() -> list[bytes]:
    lines = [line(i, note=note) for i, note in enumerate(NOTES)]
    lines += [
        line(20).replace(b'"amount": 0.0', b'"amount": 1e999'),      # refused: inf amount
        line(21).replace(b'"acct": "a0"', b'"acct": "a0", "note": 1e999'),  # an inf note
        line(22).replace(b'"acct": "a1"', b'"acct": "a1", "note": NaN'),    # input error
        line(23).replace(b'"acct": "a2"', b'"acct": 18446744073709551616'),  # an int key
        line(24).replace(b'"acct": "a0"', b'"acct": "a0", "note": ' + b"[" * 999
                         + b"]" * 999),                               # json's recursion
        b"\xef\xbb\xbf" + line(25), b"\xff" + line(26), b"", b"   ",
        line(27, note="x" * 3_000), line(28, amount=12.5, note=-0.0),
        line(29).replace(b'"event_id": "e29"', b'"event_id": null'),
    ]
    return lines


def expected(events_path: Path, config: dict[str, Any]) -> tuple[bytes, bytes]:
    """The decisions and errors files of the replay before orjson: rows read with the json
    module, decided one by one, records written with the json module."""
    engine = Engine.from_config(config)
    decisions, errors = b"", b""
    for number, event, error, excerpt in json_events(events_path):
        if event is None:
            errors += json_line({"row": number, "event_id": None, "kind": "input",
                                 "error": error, "field": None, "excerpt": excerpt})
            continue
        try:
            decision = engine.evaluate("t", event)
        except RiskEngineError as exc:
            event_id = event.get("event_id")
            errors += json_line({"row": number,
                                 "event_id": event_id if isinstance(event_id, str) else None,
                                 "kind": "event", "error": str(exc),
                                 "field": getattr(exc, "field", None), "excerpt": None})
            continue
        decisions += json_line(decision_record(number, decision, None))
    return decisions, errors


def test_replay_output_is_byte_for_byte_the_json_modules(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(hostile_input()))  # the last line has no newline
    output = tmp_path / "out.jsonl"
    result = run("replay", source, "-o", output, "-c", config_path, "--scene", "t")
    assert result.exit_code == 0, result.output
    decisions, errors = expected(source, CONFIG)
    assert output.read_bytes() == decisions
    assert (tmp_path / "out.errors.jsonl").read_bytes() == errors
    text = decisions.decode("utf-8")
    for written in ("1e-05", "-2.5e-07", "Infinity", str(2**70), "1e+16", "1e-06"):
        assert written in text, written  # the cases orjson would have written otherwise
    assert errors.count(b"\n") == 5
