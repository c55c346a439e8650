"""One root exception; every package raises a one-line subclass of it.

Messages tell the operator what is wrong and where (the feature text, the rule id and
position, the field name), so they can be shown to a client or a CLI user as they are.
"""

from __future__ import annotations


class RiskEngineError(Exception):
    """Root of every error riskengine raises on purpose."""


class ConfigError(RiskEngineError):
    """The project config is invalid; the message names the scene and the entry."""


class FeatureDefinitionError(ConfigError):
    """A feature definition (DSL or YAML form) is invalid."""


class RuleCompileError(ConfigError):
    """A rule expression was refused at load: unsafe, unknown name, or a syntax error."""

    def __init__(self, message: str, *, rule_id: str | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        self.rule_id = rule_id
        self.line = line
        self.column = column
        where = ""
        if rule_id is not None:
            where += f"rule {rule_id!r}"
        if line is not None:
            where += f" at line {line}, column {column}"
        super().__init__(f"{where.strip()}: {message}" if where else message)


class EventValidationError(RiskEngineError):
    """An event was refused: malformed, wrong type, or breaking the scene schema."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class UnknownSceneError(RiskEngineError):
    """The scene named in a request is not in the project config."""


class SnapshotError(RiskEngineError):
    """A snapshot file cannot be written or does not match this engine's config."""


class ListError(RiskEngineError):
    """A list operation or list file is invalid."""


class ModelError(ConfigError):
    """A model of a scene cannot be loaded or does not fit its inputs; names the model."""
