"""A candidate ruleset read from a file, compiled against a scene before anything runs.

The file holds what the admin API accepts for a scene's ruleset, as JSON (or YAML, by a
``.yaml``/``.yml`` extension): ``{"rules": [...], "policy": {...}}``, the policy optional
(the live one when absent). What ``GET /v1/scenes/S/ruleset`` returns is accepted too:
its ``scene`` must be the scene backtested, its ``version`` is ignored (an edited copy no
longer has it); the candidate's version is the content hash of its rules and policy,
as the admin API would name it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from riskengine.exceptions import RiskEngineError
from riskengine.rules.ruleset import Ruleset, ruleset_from_body
from riskengine.scene import SceneRuntime

__all__ = ["CandidateError", "describe_changes", "load_candidate"]

YAML_SUFFIXES = frozenset({".yaml", ".yml"})


class CandidateError(RiskEngineError):
    """The candidate ruleset file cannot be read or holds no valid ruleset."""


def load_candidate(path: Path, runtime: SceneRuntime) -> Ruleset:
    """The compiled candidate of `path` for the scene of `runtime`; `CandidateError`
    naming the file (and the rule, for a refused rule) otherwise."""
    where = f"candidate {str(path)!r}"
    if not path.exists():
        raise CandidateError(f"{where} does not exist")
    if not path.is_file():
        raise CandidateError(f"{where} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CandidateError(f"cannot read {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CandidateError(f"{where} is not UTF-8 text (byte {exc.start})") from None
    body = _parse(text, path.suffix.lower() in YAML_SUFFIXES, where)
    if isinstance(body, dict):
        scene = body.pop("scene", runtime.name)
        if scene != runtime.name:
            raise CandidateError(f"{where} is for scene {scene!r:.100}, not {runtime.name!r}")
        body.pop("version", None)
    try:
        return ruleset_from_body(runtime.name, body, runtime.names, runtime.ruleset.policy)
    except RiskEngineError as exc:
        raise CandidateError(f"{where}: {exc}") from None


def describe_changes(live: Ruleset, candidate: Ruleset) -> dict[str, Any]:
    """What the candidate changes, in words: ``{"rules": {rule_id: change}, "policy":
    change or None}`` — a rule is ``new``, ``removed``, or lists what differs
    (``when``, ``score 30 → 50``, ``mode shadow → active``); rules that are unchanged, or
    differ only by their reason, are left out.

    >>> from riskengine.engine import Engine
    >>> names = Engine.from_config(None).scene("transfer").names
    >>> a = Ruleset.build("transfer", [{"id": "big", "when": "amount > 9", "score": 30}],
    ...                   {"review_at": 50}, names)
    >>> b = Ruleset.build("transfer", [{"id": "big", "when": "amount > 5", "score": 50},
    ...                                {"id": "tiny", "when": "amount < 1", "score": 5}],
    ...                   {"review_at": 40}, names)
    >>> describe_changes(a, b)
    {'rules': {'big': 'when, score 30 → 50', 'tiny': 'new'}, 'policy': 'review_at 50 → 40'}
    """
    before = {rule.id: rule.to_dict() for rule in live.rules}
    after = {rule.id: rule.to_dict() for rule in candidate.rules}
    rules: dict[str, str] = {}
    for rule_id in (*before, *(r for r in after if r not in before)):
        old, new = before.get(rule_id), after.get(rule_id)
        if old is None or new is None:
            rules[rule_id] = "new" if old is None else "removed"
        elif old != new:
            change = _differences(old, new)
            if change:
                rules[rule_id] = change
    policy = _differences(live.policy.to_dict(), candidate.policy.to_dict()) or None
    return {"rules": rules, "policy": policy}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = []
    for key in old:
        if old[key] == new[key] or key == "reason":  # a reason changes no decision
            continue
        if key == "when":
            parts.append(key)
        else:
            parts.append(f"{key} {_show(old[key])} → {_show(new[key])}")
    return ", ".join(parts)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parse(text: str, as_yaml: bool, where: str) -> object:
    if as_yaml:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or exc
            raise CandidateError(f"{where}: invalid YAML{at}: {problem}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CandidateError(f"{where}: invalid JSON at line {exc.lineno}, column "
                             f"{exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise CandidateError(f"{where}: invalid JSON: nested too deeply") from None
