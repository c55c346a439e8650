"""The review tests' project: the example config plus a list of paying accounts confirmed
as fraud and the rule that rejects them, so resolving a review as fraud and listing the
payer closes the loop (the payer's next transfer is rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import riskengine
from tests.service.helpers import transfer

EXAMPLE = Path(riskengine.__file__).parent / "examples" / "config.yaml"
FRAUD_LIST = "fraud_accounts"


def review_config(folder: Path) -> Path:
    """Write the config into `folder`; returns its path."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for model in config["scenes"]["transfer"]["models"].values():
        model["uri"] = str(EXAMPLE.parent / model["uri"])
    config["lists"][FRAUD_LIST] = {"reason": "paying accounts confirmed as fraud",
                                   "values": []}
    transfer_scene = config["scenes"]["transfer"]
    transfer_scene["lists"].append({"list": FRAUD_LIST, "field": "pay_account"})
    transfer_scene["rules"].append({
        "id": "fraud_account", "when": f'in_list("{FRAUD_LIST}", pay_account)',
        "action": "reject", "score": 100, "reason": "paying account confirmed as fraud"})
    path = folder / "config.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def reviewed(i: int, payer: str, **fields: Any) -> dict[str, Any]:
    """A transfer the example config answers ``review``: a small payment to a receiver
    nobody paid before, which its fraud model scores as likely fraud."""
    return transfer(i, pay_account=payer, rcv_account=f"M-{i}", amount=5.0,
                    device_id=f"dev-{i}", **fields)
