"""The shipped example config as a mapping that can be written to any folder."""

from __future__ import annotations

from typing import Any

import yaml

from riskengine.config import EXAMPLE_CONFIG_PATH


def example_config() -> dict[str, Any]:
    """The example config with its model files named by absolute paths (a config file
    written elsewhere would read a relative path next to itself)."""
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG_PATH.read_text(encoding="utf-8"))
    for scene in raw["scenes"].values():
        for model in (scene.get("models") or {}).values():
            model["uri"] = str(EXAMPLE_CONFIG_PATH.parent / model["uri"])
    return raw
