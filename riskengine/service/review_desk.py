"""The review desk: what an analyst does with the review queue, written once for the JSON
API (review_routes.py) and the console's review pages.

- the queue and one item (404 when the event id was never queued);
- a claim for `ServiceSettings.review_claim_ms` (409 while another analyst holds the item
  or once it is resolved);
- the evidence: the item, the logged decision (features, hits, reasons), the event it was
  made on, its label, and the recent decisions of the entity (the event's value of the
  scene's first ``by`` field);
- a resolution (``fraud``/``legit``, a note, optionally putting the event's value of one
  field on a list): the label is stored with the resolution in one transaction, then the
  list is changed through the admin list changes and the change audited;
- the audit trail.

Every refusal is a `ReviewRefused` carrying the status, the message, the error code and
the field at fault: the API answers it as its JSON error, the console as its error page.
An unreachable decision log is a 503; nothing here answers another 5xx.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from riskengine.decisionlog import DecisionLogError
from riskengine.decisionlog.labels import Label
from riskengine.decisionlog.record import now_ms
from riskengine.decisionlog.reviews import (
    MAX_NOTE,
    OUTCOMES,
    AuditEntry,
    Claim,
    ReviewItem,
    analyst_error,
)
from riskengine.exceptions import ListError, RiskEngineError, UnknownSceneError
from riskengine.lists import parse_expiry
from riskengine.service.runtime import ServiceRuntime
from riskengine.state.redis.backend import STATE_ERRORS

__all__ = ["LISTING_FIELDS", "MAX_LIST_REASON", "RECENT_DECISIONS", "Evidence", "Resolution",
           "ReviewDesk", "ReviewRefused", "checked_analyst", "fields_of"]

log = logging.getLogger("riskengine.service")
T = TypeVar("T")

RECENT_DECISIONS = 20
MAX_LIST_REASON = 1000
LISTING_FIELDS = ("list", "field", "expires", "reason")


class ReviewRefused(RiskEngineError):
    """A review action that was not done: `status` (4xx, or 503 when the log or the state
    cannot be reached), `message`, an error `code`, the `field` at fault and `extra` facts
    (the item as it stands, for a conflict)."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 field: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.field = field
        self.extra = extra or {}


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an analyst sees of a queued item (`to_dict`: the API's evidence body)."""

    item: ReviewItem
    decision: dict[str, Any] | None
    event: dict[str, Any]
    label: Label | None
    entity: dict[str, Any] | None

    @property
    def reasons(self) -> list[str]:
        hits = [] if self.decision is None else self.decision.get("hits", [])
        return [hit.get("reason", "") for hit in hits]

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item.to_dict(), "decision": self.decision, "event": self.event,
                "reasons": self.reasons,
                "label": None if self.label is None else self.label.to_dict(),
                "entity": self.entity}


@dataclass(frozen=True, slots=True)
class Resolution:
    """A resolved item, its stored label and the list entry it added (None without)."""

    item: ReviewItem
    label: Label | None
    list_entry: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item.to_dict(),
                "label": None if self.label is None else self.label.to_dict(),
                "list_entry": self.list_entry}


def fields_of(body: object, allowed: tuple[str, ...], required: tuple[str, ...],
              what: str) -> Mapping[str, Any]:
    """`body` as an object with `required` keys and no others than `allowed` (422)."""
    if not isinstance(body, dict):
        raise ReviewRefused(422, f"{what} is an object with {', '.join(allowed)}")
    unknown = sorted(str(key)[:40] for key in body if key not in allowed)
    if unknown:
        raise ReviewRefused(422, f"{what}: unknown field(s) {', '.join(map(repr, unknown))}; "
                                 f"allowed: {', '.join(allowed)}", field=unknown[0])
    for key in required:
        if key not in body:
            raise ReviewRefused(422, f"{what}: {key!r} is required", field=key)
    return body


def checked_analyst(analyst: object) -> str:
    """`analyst` if it is a valid analyst name (422 otherwise)."""
    error = analyst_error(analyst)
    if error is not None or type(analyst) is not str:
        raise ReviewRefused(422, error or "analyst must be a string", field="analyst")
    return analyst


def _checked_resolution(outcome: object, note: object) -> tuple[str, str | None]:
    if type(outcome) is not str or outcome not in OUTCOMES:
        raise ReviewRefused(422, f"outcome must be one of {', '.join(OUTCOMES)}",
                            field="outcome")
    if note is not None and (type(note) is not str or len(note) > MAX_NOTE):
        raise ReviewRefused(422, f"note must be a string of at most {MAX_NOTE} characters",
                            field="note")
    return outcome, note


def _conflict(event_id: str, found: Claim, now: int) -> ReviewRefused:
    """Why a claim or a resolution was not done: 404 not queued, 409 resolved or held."""
    item = found.item
    if item is None:
        return ReviewRefused(404, f"event_id {event_id[:80]!r} is not in the review queue")
    if item.state == "resolved":
        return ReviewRefused(409, f"the review of {event_id[:80]!r} was resolved by "
                                  f"{item.resolved_by} ({item.outcome})", code="resolved",
                             extra={"item": item.to_dict()})
    return ReviewRefused(409, f"the review of {event_id[:80]!r} is claimed by "
                              f"{item.claimed_by} for "
                              f"{max(0, (item.claim_until or now) - now) // 1000} s more",
                         code="claimed", extra={"item": item.to_dict()})


class ReviewDesk:
    """The review actions on one service runtime's decision log, lists and config."""

    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt

    async def _logged(self, work: Callable[[], T], action: str) -> T:
        try:
            return await asyncio.to_thread(work)
        except DecisionLogError as exc:
            raise ReviewRefused(503, f"{action}: {exc}") from None
        except ValueError as exc:  # an argument the log refused
            raise ReviewRefused(422, str(exc)) from None

    async def items(self, scene: str | None, state: str | None,
                    limit: int) -> list[ReviewItem]:
        """The queue, oldest first."""
        return await self._logged(lambda: self.rt.log.review_items(scene, state, limit),
                                  "the review queue cannot be read")

    async def item(self, event_id: str) -> ReviewItem:
        """The queue item of `event_id` (404 when it was never queued)."""
        found = await self._logged(lambda: self.rt.log.review_item(event_id),
                                   "the review queue cannot be read")
        if found is None:
            raise ReviewRefused(404, f"event_id {event_id[:80]!r} is not in the review queue")
        return found

    async def claim(self, event_id: str, analyst: object) -> ReviewItem:
        """Hold the item for `analyst` (again: extend the claim); 409 when someone else
        holds it or it is resolved."""
        name = checked_analyst(analyst)
        found = await self._logged(lambda: self.rt.log.claim_review(
            event_id, name, claim_ms=self.rt.settings.review_claim_ms),
            "the claim was not stored")
        if not found.done or found.item is None:
            raise _conflict(event_id, found, now_ms())
        return found.item

    async def event_of(self, item: ReviewItem) -> dict[str, Any]:
        """The event the queued decision was made on ({} when the log no longer has it)."""
        found = await self._logged(lambda: self.rt.log.logged_event(item.event_id,
                                                                    lsn=item.lsn),
                                   "the event cannot be read")
        return {} if found is None else found

    async def label(self, event_id: str) -> Label | None:
        labels = await self._logged(lambda: self.rt.log.labels_for([event_id]),
                                    "labels cannot be read")
        return labels.get(event_id)

    async def evidence(self, event_id: str) -> Evidence:
        """The item, its decision, event and label, and the entity's recent decisions."""
        item = await self.item(event_id)
        decision = await self._logged(lambda: self.rt.log.get(event_id),
                                      "the decision cannot be read")
        event = await self.event_of(item)
        label = await self.label(event_id)
        entity: dict[str, Any] | None = None
        field = self.entity_field(item.scene)
        if field is not None and isinstance(event.get(field), str | int | float):
            value = str(event[field])
            recent = await self._logged(lambda: self.rt.log.query(
                scene=item.scene, entity=(field, value), limit=RECENT_DECISIONS),
                "the entity's decisions cannot be read")
            entity = {"field": field, "value": event[field], "recent_decisions": recent}
        return Evidence(item, decision, event, label, entity)

    async def resolve(self, event_id: str, analyst: object, outcome: object,
                      note: object = None, add_to_list: object = None) -> Resolution:
        """Resolve the item (409 when resolved already or held by someone else), store its
        label and, with `add_to_list` ({"list", "field", "expires"?, "reason"?}), put the
        event's value of that field on the list."""
        name = checked_analyst(analyst)
        verdict, text = _checked_resolution(outcome, note)
        item = await self.item(event_id)
        listing = None
        if add_to_list is not None:
            listing = self._listing(add_to_list, await self.event_of(item))
        detail = {} if listing is None else {"add_to_list": listing}
        found = await self._logged(lambda: self.rt.log.resolve_review(
            event_id, name, verdict, note=text, detail=detail), "the review was not resolved")
        if not found.done or found.item is None:
            raise _conflict(event_id, found, now_ms())
        entry = None if listing is None else await self._put_on_list(event_id, name, listing)
        return Resolution(found.item, await self.label(event_id), entry)

    async def audit(self, event_id: str) -> list[AuditEntry]:
        """Who claimed, resolved and listed what, and when, oldest first."""
        return await self._logged(lambda: self.rt.log.review_audit(event_id),
                                  "the audit trail cannot be read")

    def entity_field(self, scene: str) -> str | None:
        """The scene's first ``by`` field (the entity its first feature counts by)."""
        try:
            features = self.rt.engine.scene(scene).config.features
        except UnknownSceneError:  # a scene no longer configured
            return None
        return next((spec.by[0] for spec in features if spec.by), None)

    def _listing(self, raw: object, event: Mapping[str, Any]) -> dict[str, Any]:
        """The validated list change of a resolution: list, field, value, expires, reason."""
        spec = fields_of(raw, LISTING_FIELDS, ("list", "field"), "add_to_list")
        name, field = spec["list"], spec["field"]
        names = self.rt.list_catalog.names()
        if type(name) is not str or name not in names:
            raise ReviewRefused(422, f"add_to_list: unknown list {str(name)[:100]!r}; lists: "
                                     f"{', '.join(names)}", field="add_to_list.list")
        value = event.get(field) if type(field) is str else None
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise ReviewRefused(422, f"add_to_list: the event has no text or integer value "
                                     f"in field {str(field)[:100]!r}",
                                field="add_to_list.field")
        expires = spec.get("expires")
        try:
            expires_at = None if expires is None else parse_expiry(
                expires, what="add_to_list.expires")
        except ListError as exc:
            raise ReviewRefused(422, str(exc), field="add_to_list.expires") from None
        reason = spec.get("reason")
        if reason is not None and (type(reason) is not str or len(reason) > MAX_LIST_REASON):
            raise ReviewRefused(422, f"add_to_list.reason must be a string of at most "
                                     f"{MAX_LIST_REASON} characters",
                                field="add_to_list.reason")
        return {"list": name, "field": field, "value": str(value), "expires": expires_at,
                "reason": reason or ""}

    async def _put_on_list(self, event_id: str, analyst: str,
                           listing: Mapping[str, Any]) -> dict[str, Any]:
        """Put the resolution's value on its list and audit it; 503 (the review stays
        resolved) when the list cannot be changed."""
        reason = listing["reason"] or f"review of {event_id[:80]} by {analyst}"
        try:
            entry = await asyncio.to_thread(self.rt.lists.put, listing["list"],
                                            listing["value"], expires=listing["expires"],
                                            reason=reason)
        except (ListError, *STATE_ERRORS) as exc:
            raise ReviewRefused(503, f"the review is resolved but {listing['value'][:80]!r} "
                                     f"was not put on list {listing['list']!r}: {exc}"
                                ) from None
        try:
            await asyncio.to_thread(self.rt.log.audit_review, event_id, analyst, "list",
                                    {"list": listing["list"], "value": listing["value"],
                                     "expires": listing["expires"], "reason": reason})
        except DecisionLogError as exc:
            log.error("the list change of review %r was not audited: %s", event_id[:80], exc)
        result: dict[str, Any] = entry.to_dict()
        return result
