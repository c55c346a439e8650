"""Config file changes put new rules live within a second; a bad file changes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from tests.example_config import example_config
from tests.service.helpers import transfer
from tests.waiting import eventually


def test_edited_config_goes_live_and_bad_edits_are_refused(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    raw = example_config()
    config.write_text(yaml.safe_dump(raw))
    client = make_client(config=config, watch_config=True)
    old = client.post("/v1/transfer/evaluate", json=transfer(1)).json()["ruleset_version"]

    raw["scenes"]["transfer"]["rules"].append(
        {"id": "everything", "when": "amount >= 0", "action": "review"})
    edited = tmp_path / "config.yaml.tmp"

    def new_version_live() -> bool:
        # saved again on every try: the watcher may start after the first save
        edited.write_text(yaml.safe_dump(raw))
        edited.replace(config)  # how editors save
        d = client.post("/v1/transfer/evaluate", json=transfer(int(time.monotonic() * 1e6)))
        return d.json()["ruleset_version"] != old

    assert eventually(new_version_live, 10.0, 0.3)
    live = client.post("/v1/transfer/evaluate", json=transfer(10**9)).json()
    assert live["decision"] == "review"

    raw["scenes"]["transfer"]["rules"].append({"id": "broken", "when": "amount >", "score": 1})
    edited.write_text(yaml.safe_dump(raw))
    edited.replace(config)  # at once: a watcher may read a file written in place half-way
    refused = 'riskengine_ruleset_reload_failures_total{source="config"} 1.0'
    assert eventually(lambda: refused in client.get("/metrics").text, 10.0, 0.05)
    after = client.post("/v1/transfer/evaluate", json=transfer(10**9 + 1)).json()
    assert after["ruleset_version"] == live["ruleset_version"]
