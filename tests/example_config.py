"""The shipped example config as a mapping that can be written to any folder."""

from __future__ import annotations

from pathlib import Path
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


def example_rules_only(path: Path) -> Path:
    """Write the example config without its models and the rules reading them to `path`:
    for tests whose expected decisions are worked out by hand from the rules."""
    raw = example_config()
    for scene in raw["scenes"].values():
        models = scene.pop("models", None) or {}
        scene["rules"] = [r for r in scene["rules"]
                          if not any(f'model("{name}")' in r["when"] for name in models)]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path
