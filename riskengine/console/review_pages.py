"""The console's review pages: the queue, one item's evidence, and its claim and
resolution, done as the session's analyst through the review desk
(riskengine/service/review_desk.py) that the ``/v1/reviews`` API uses too.

A refused action (claimed by someone else, resolved already, a bad list change) is the
error page with the desk's status: 404, 409 or 422, and 503 only when the decision log or
the shared state cannot be reached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from riskengine.console.forms import PageError, field
from riskengine.decisionlog.reviews import REVIEW_STATES
from riskengine.service.review_desk import ReviewDesk, ReviewRefused

if TYPE_CHECKING:
    from riskengine.console.routes import Console

__all__ = ["ReviewPages"]

QUEUE_LIMIT = 100
MAX_REVIEW_FORM = 64 * 1024
_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


@contextlib.contextmanager
def _shown() -> Iterator[None]:
    """A refused review action as the console's error page."""
    try:
        yield
    except ReviewRefused as exc:
        raise PageError(exc.status, exc.message) from None


def age(seconds: object) -> str:
    """A queue age for people: the two largest units.

    >>> age(3725.5), age(42), age(200000)
    ('1 h 2 min', '42 s', '2 d 7 h')
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return "—"
    left = int(seconds)
    parts: list[str] = []
    for unit, size in _UNITS:
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size} {unit}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def _listable_fields(event: dict[str, Any]) -> list[str]:
    """The event's fields whose value can go on a list (text or an integer)."""
    return sorted(name for name, value in event.items()
                  if isinstance(value, str | int) and not isinstance(value, bool)
                  and value != "")


class ReviewPages:
    """``/console/reviews``, ``/console/review`` and its claim and resolve forms."""

    def __init__(self, console: Console, prefix: str, headers: Mapping[str, str]) -> None:
        self.console = console
        self.prefix = prefix
        self.headers = dict(headers)
        self.desk = ReviewDesk(console.rt)
        console.templates.filters["age"] = age

    def add_to(self, router: APIRouter) -> None:
        router.add_api_route("/reviews", self.queue, methods=["GET"])
        router.add_api_route("/review", self.item, methods=["GET"])
        router.add_api_route("/review/claim", self.claim, methods=["POST"])
        router.add_api_route("/review/resolve", self.resolve, methods=["POST"])

    async def queue(self, request: Request) -> Response:
        console = self.console
        session = console.session(request)
        scene = console.query(request, "scene", 200)
        if scene is not None:
            console.scene(scene)  # 404 for an unknown scene
        state = console.query(request, "state", 20)
        if state is not None and state not in REVIEW_STATES:
            raise PageError(422, f"state must be one of {', '.join(REVIEW_STATES)}")
        with _shown():
            items = await self.desk.items(scene, state, QUEUE_LIMIT)
        return console.render(request, "reviews.html", session=session,
                              items=[item.to_dict() for item in items], states=REVIEW_STATES,
                              form={"scene": scene or "", "state": state or ""},
                              limit=QUEUE_LIMIT)

    async def item(self, request: Request) -> Response:
        console = self.console
        session = console.session(request)
        event_id = console.query(request, "id", 256)
        if event_id is None:
            raise PageError(422, "give an event id")
        with _shown():
            evidence = await self.desk.evidence(event_id)
            trail = await self.desk.audit(event_id)
        item = evidence.item.to_dict()
        names = console.rt.list_catalog.names()
        return console.render(
            request, "review.html", session=session, item=item, d=evidence.decision,
            event=evidence.event, reasons=evidence.reasons, entity=evidence.entity,
            label=None if evidence.label is None else evidence.label.to_dict(),
            audit=[entry.to_dict() for entry in trail],
            mine=item["state"] == "claimed" and item["claimed_by"] == session.analyst,
            list_names=names, fields=_listable_fields(evidence.event),
            entity_field=self.desk.entity_field(evidence.item.scene))

    async def claim(self, request: Request) -> Response:
        session, form = await self.console.posted(request, 16 * 1024)
        event_id = field(form, "id", required=True, max_chars=256) or ""
        with _shown():
            await self.desk.claim(event_id, session.analyst)
        return self._to_item(event_id)

    async def resolve(self, request: Request) -> Response:
        session, form = await self.console.posted(request, MAX_REVIEW_FORM)
        event_id = field(form, "id", required=True, max_chars=256) or ""
        note = form.get("note", "").strip() or None
        listing: dict[str, str] | None = None
        if form.get("list", "").strip():
            listing = {"list": form["list"].strip(), "field": form.get("field", "").strip()}
            for name in ("expires", "reason"):
                if form.get(name, "").strip():
                    listing[name] = form[name].strip()
        with _shown():
            await self.desk.resolve(event_id, session.analyst, form.get("outcome"), note,
                                    listing)
        return self._to_item(event_id)

    def _to_item(self, event_id: str) -> Response:
        return RedirectResponse(f"{self.prefix}/review?{urlencode({'id': event_id})}",
                                status_code=303, headers=self.headers)
