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

import yaml

from riskengine.exceptions import RiskEngineError
from riskengine.rules.ruleset import Ruleset, ruleset_from_body
from riskengine.scene import SceneRuntime

__all__ = ["CandidateError", "load_candidate"]

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
