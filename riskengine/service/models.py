"""Pydantic models of the service's JSON, used for the OpenAPI document.

The hot path does not validate through them: events are checked by the scene's own
`EventParser`, and decisions are serialised straight from `Decision.to_dict()`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An event of the scene: its schema fields plus any others. `timestamp` "
                   "(epoch ms or ISO-8601 with offset) defaults to the time of arrival; "
                   "`event_id` (1..256 characters) is generated if absent.",
    "properties": {
        "event_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "timestamp": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
    },
    "additionalProperties": True,
    "example": {"event_id": "tx-1001", "timestamp": 1_700_000_000_000,
                "pay_account": "A-1", "rcv_account": "B-7", "amount": 1000.0},
}

BATCH_SCHEMA: dict[str, Any] = {"type": "array", "items": EVENT_SCHEMA}


class HitModel(BaseModel):
    rule_id: str
    reason: str
    score: float
    action: str | None = None


class DecisionModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: str
    scene: str
    decision: str = Field(description="accept, review or reject")
    score: float
    hits: list[HitModel]
    shadow_hits: list[HitModel]
    features: dict[str, Any]
    list_hits: list[str]
    ruleset_version: str
    late: bool
    degraded: bool
    latency_ms: float
    lsn: int
    timestamp: int
    rule_errors: list[str]


class LoggedDecisionModel(DecisionModel):
    logged_at: int | None = None


class RuleModel(BaseModel):
    """A rule as `PUT .../ruleset` takes it; the ruleset refuses anything else."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["score"]}, {"required": ["action"]}]})

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=200)
    when: str = Field(min_length=1, max_length=4000)
    action: Literal["accept", "review", "reject"] | None = None
    score: float = Field(default=0.0, ge=-1e9, le=1e9,
                         description="give a non-zero score, an action, or both")
    reason: str | None = None
    mode: Literal["active", "shadow"] = "active"


class RulesetModel(BaseModel):
    scene: str
    version: str
    policy: dict[str, Any]
    rules: list[dict[str, Any]]


RULESET_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["rules"],
    "additionalProperties": False,
    "properties": {
        "rules": {"type": "array", "items": RuleModel.model_json_schema()},
        "policy": {"type": "object", "additionalProperties": False, "properties": {
            "review_at": {"type": ["number", "null"]}, "reject_at": {"type": ["number", "null"]},
            "default": {"type": "string", "enum": ["accept", "review", "reject"]}}},
    },
}


class RulesetChangeModel(BaseModel):
    scene: str
    version: str
    active: bool
    changed: bool


class VersionModel(BaseModel):
    version: str
    created_at_ms: int
    source: str
    rules: int
    active: bool
    rolled_back_by_guard: dict[str, Any] | None = Field(
        None, description="The guarded rollout's verdict when it rolled this version back")


class ListEntryModel(BaseModel):
    value: str | int
    expires_at_ms: int | None
    reason: str


class ListModel(BaseModel):
    name: str
    reason: str
    entries: list[ListEntryModel]


LIST_ENTRY_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "expires": {"description": "epoch ms or ISO-8601; the entry stops matching events "
                                   "at or after this event time",
                    "oneOf": [{"type": "integer"}, {"type": "string"}]},
        "reason": {"type": "string", "maxLength": 1000},
    },
    "additionalProperties": False,
}


class EntityModel(BaseModel):
    scene: str
    field: str
    value: str
    as_of: int | None = Field(description="event time (ms) the values are computed at")
    features: dict[str, Any]


class HealthModel(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)


class SnapshotModel(BaseModel):
    lsn: int = Field(description="the last LSN the snapshot holds")


class MirrorSideModel(BaseModel):
    decision: str
    score: float
    duplicate: bool


class MirrorSampleModel(BaseModel):
    event_id: str
    scene: str
    live: MirrorSideModel
    candidate: MirrorSideModel
    hits_only_live: list[str]
    hits_only_candidate: list[str]


class MirrorModel(BaseModel):
    enabled: bool = Field(description="false when the service runs without --mirror")
    url: str | None = None
    queue: int | None = Field(None, description="queue capacity (requests)")
    queue_bytes: int | None = Field(None, description="queue capacity (body bytes)")
    queue_depth: int = 0
    score_tolerance: float | None = None
    timeout_s: float | None = None
    max_samples: int | None = Field(None, description="how many mismatches are kept")
    samples: list[MirrorSampleModel] = Field(
        default_factory=list, description="the latest mismatches, newest first")
    senders: int | None = None
    batch: int | None = Field(None, description="events per request to the candidate, at "
                                                "most (a larger batch request goes whole)")
    requests_sent: int = Field(0, description="requests sent to the candidate")
    counts: dict[str, int] = Field(
        default_factory=dict, description="events by result: match, mismatch, error, dropped")
    errors: dict[str, int] = Field(default_factory=dict,
                                   description="events not compared, by reason")
