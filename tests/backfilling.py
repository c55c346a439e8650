"""What the backfill tests share: history and live traffic, the files the command reads,
and the reference — a replay of history + live in one in-memory engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.engine import Engine
from riskengine.synth import generate_transfers
from tests.hostile import hostile_config, hostile_stream

Events = list[dict[str, Any]]


def write_jsonl(path: Path, events: Events) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def hostile_case(tmp_path: Path, seed: int, n: int, cut: int
                 ) -> tuple[Path, str, Events, Events]:
    """A hostile stream (tests/hostile.py) split at `cut`: its config file, its scene, the
    history and the live events."""
    events, _ = hostile_stream(seed, n)
    config = write_config(tmp_path / f"hostile-{seed}.yaml", hostile_config())
    return config, "s", events[:cut], events[cut:]


def demo_case(n: int, cut: int, seed: int = 5) -> tuple[Path, str, Events, Events]:
    """The example config's demo traffic (`riskengine generate`) split at `cut`; labels
    stay in the history file (a replay keeps them out of the engine) and are dropped
    from the live events."""
    events = list(generate_transfers(n, seed))
    live = [{k: v for k, v in e.items() if k != "label"} for e in events[cut:]]
    return EXAMPLE_CONFIG_PATH, "transfer", events[:cut], live


def comparable(decision: dict[str, Any]) -> dict[str, Any]:
    """Every field of a decision but its latency."""
    return {k: v for k, v in decision.items() if k != "latency_ms"}


def replayed(config: Path, scene: str, history: Events, live: Events) -> list[dict[str, Any]]:
    """The live events' decisions in a replay of history + live (one in-memory engine, in
    order; the history's labels kept out of the engine, as `replay` does)."""
    engine = Engine.from_config(config)
    for event in history:
        engine.evaluate(scene, {k: v for k, v in event.items() if k != "label"})
    return [comparable(engine.evaluate(scene, event).to_dict()) for event in live]
