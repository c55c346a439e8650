"""The console's routes (mounted under ``/console`` by `add_console`).

GET pages need a session (else a redirect to the sign-in page); every POST needs the
session and its CSRF token (else 403). Refused input answers the error page with a 4xx
status; only an unreachable decision log or shared state answers 503.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from riskengine.console.forms import (
    MAX_FIELD_CHARS,
    PageError,
    event_time,
    field,
    read_form,
    read_log,
)
from riskengine.console.overview import (
    RateRing,
    degraded_by_scene,
    latency_percentiles,
    top_rules,
)
from riskengine.console.review_pages import ReviewPages
from riskengine.console.session import (
    COOKIE,
    DEFAULT_ANALYST,
    LIFETIME_S,
    Session,
    SessionSigner,
)
from riskengine.decisionlog import DECISIONS
from riskengine.decisionlog.reviews import analyst_error
from riskengine.exceptions import (
    ConfigError,
    ListError,
    RuleCompileError,
    UnknownSceneError,
)
from riskengine.scene import SceneRuntime
from riskengine.service.runtime import ServiceRuntime
from riskengine.state.redis.backend import STATE_ERRORS

HERE = Path(__file__).parent
PREFIX = "/console"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
QUERY_LIMIT = 100
Handler = Callable[..., Awaitable[Response]]


class LoginRequired(Exception):
    """No valid session: GET pages go to the sign-in page, anything else is refused."""


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = _format_ms
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False,
                                                     sort_keys=True, default=str)
    return env


def _format_ms(value: object) -> str:
    if type(value) is not int:
        return "—"
    try:
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):
        return str(value)


def add_console(app: FastAPI, rt: ServiceRuntime) -> None:
    """Mount the console at /console on `app` (its static files at /console/static)."""
    Console(rt).mount(app)


class Console:
    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt
        token = rt.settings.admin_token
        assert token, "the service always has an admin token (ensure_admin_token)"
        self.signer = SessionSigner(token)
        self.ring = RateRing(rt.metrics)
        self.templates = _environment()

    # -- plumbing

    def mount(self, app: FastAPI) -> None:
        # The page modules build on this one (Console, PREFIX): imported here, not above.
        from riskengine.console.backtest_pages import BacktestPages
        from riskengine.console.experiment_pages import ExperimentPages

        router = APIRouter(prefix=PREFIX, include_in_schema=False)
        get: list[tuple[str, Handler]] = [
            ("", self.overview), ("/overview/panel", self.overview_panel),
            ("/decisions", self.decisions), ("/decision", self.decision),
            ("/entity", self.entity), ("/rules", self.rules), ("/rules/diff", self.diff),
            ("/lists", self.lists), ("/login", self.login_page)]
        post: list[tuple[str, Handler]] = [
            ("/login", self.login), ("/logout", self.logout),
            ("/rules/save", self.save_rules), ("/rules/activate", self.activate),
            ("/lists/add", self.add_entry), ("/lists/remove", self.remove_entry)]
        self.pages = (ExperimentPages(self), BacktestPages(self))
        for pages in self.pages:
            get += pages.get
            post += pages.post
        for path, handler in get:
            router.add_api_route(path, handler, methods=["GET"])
        for path, handler in post:
            router.add_api_route(path, handler, methods=["POST"])
        ReviewPages(self, PREFIX, SECURITY_HEADERS).add_to(router)
        app.include_router(router)
        app.state.console = self
        app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"),
                  name="console-static")
        app.add_exception_handler(PageError, self._page_error)
        app.add_exception_handler(LoginRequired, self._login_required)

    def render(self, request: Request, template: str, status_code: int = 200,
               session: Session | None = None, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            prefix=PREFIX, path=request.url.path, session=session,
            csrf=self.signer.csrf_token(session) if session else "",
            scenes=list(self.rt.engine.scenes), **context)
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)

    async def _page_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return self.render(request, "error.html", exc.status, self._session(request),
                           status=exc.status, message=exc.message)

    async def _login_required(self, request: Request, exc: Exception) -> Response:
        if request.method in ("GET", "HEAD"):
            return RedirectResponse(PREFIX + "/login", status_code=303,
                                    headers=SECURITY_HEADERS)
        return self.render(request, "error.html", 403, None, status=403,
                           message="sign in first: this form needs a session")

    def _session(self, request: Request) -> Session | None:
        return self.signer.check(request.cookies.get(COOKIE))

    def session(self, request: Request) -> Session:
        found = self._session(request)
        if found is None:
            raise LoginRequired
        return found

    async def posted(self, request: Request, limit: int | None = None
                     ) -> tuple[Session, dict[str, str]]:
        """The session and form of a POST; 403 without the session's CSRF token."""
        session = self.session(request)
        form = await read_form(request) if limit is None else await read_form(request, limit)
        if not self.signer.csrf_matches(session, form.get("csrf")):
            raise PageError(403, "the form's CSRF token is missing or wrong; reload the page")
        return session, form

    def scene(self, name: str | None) -> tuple[str, SceneRuntime]:
        scenes = list(self.rt.engine.scenes)
        chosen = name or (scenes[0] if scenes else "")
        try:
            return chosen, self.rt.engine.scene(chosen)
        except UnknownSceneError:
            raise PageError(404, f"unknown scene {chosen[:100]!r}; scenes: "
                                 f"{', '.join(scenes)}") from None

    @staticmethod
    def query(request: Request, name: str, max_chars: int = MAX_FIELD_CHARS) -> str | None:
        return field(request.query_params, name, max_chars=max_chars)

    # -- sign in and out

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", session=self._session(request), error=None)

    async def login(self, request: Request) -> Response:
        form = await read_form(request, 16 * 1024)
        if not self.signer.token_matches(form.get("token", "")):
            return self.render(request, "login.html", 403, None,
                               error="That is not the admin token.")
        analyst = form.get("analyst", "").strip() or DEFAULT_ANALYST
        error = analyst_error(analyst)
        if error is not None:
            return self.render(request, "login.html", 422, None, error=f"Analyst name: {error}")
        response = RedirectResponse(PREFIX, status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE, self.signer.issue(analyst=analyst), max_age=LIFETIME_S,
                            path=PREFIX, secure=request.url.scheme == "https", httponly=True,
                            samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        await self.posted(request, 16 * 1024)
        response = RedirectResponse(PREFIX + "/login", status_code=303,
                                    headers=SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path=PREFIX, secure=request.url.scheme == "https",
                               httponly=True, samesite="strict")
        return response

    # -- overview

    def _overview_data(self) -> dict[str, Any]:
        self.ring.sample()
        series = self.ring.series()
        latest = {d: (series[d][-1] if series[d] else None) for d in DECISIONS}
        return {"series": series, "latest": latest,
                "latency": latency_percentiles(self.rt.metrics),
                "top_rules": top_rules(self.rt.metrics),
                "degraded": degraded_by_scene(self.rt.metrics)}

    async def overview(self, request: Request) -> Response:
        session = self.session(request)
        return self.render(request, "overview.html", session=session,
                           **self._overview_data())

    async def overview_panel(self, request: Request) -> Response:
        session = self.session(request)
        return self.render(request, "overview_panel.html", session=session,
                           **self._overview_data())

    # -- decisions

    async def decisions(self, request: Request) -> Response:
        session = self.session(request)
        event_id = self.query(request, "event_id", 256)
        if event_id is not None:
            return RedirectResponse(f"{PREFIX}/decision?{urlencode({'id': event_id})}",
                                    status_code=303, headers=SECURITY_HEADERS)
        scene = self.query(request, "scene", 200)
        if scene is not None:
            self.scene(scene)
        outcome = self.query(request, "decision", 20)
        if outcome is not None and outcome not in DECISIONS:
            raise PageError(422, f"decision must be one of {', '.join(DECISIONS)}")
        since, until = (event_time(self.query(request, name, 64), name)
                        for name in ("since", "until"))
        rows = await self._log(self.rt.log.query, scene=scene, decision=outcome, since=since,
                               until=until, limit=QUERY_LIMIT)
        form = {name: request.query_params.get(name, "")[:256]
                for name in ("scene", "decision", "since", "until")}
        return self.render(request, "decisions.html", session=session, rows=rows, form=form,
                           outcomes=DECISIONS, limit=QUERY_LIMIT)

    async def decision(self, request: Request) -> Response:
        session = self.session(request)
        event_id = self.query(request, "id", 256)
        if event_id is None:
            raise PageError(422, "give an event id")
        found = await self._log(self.rt.log.get, event_id)
        if found is None:
            raise PageError(404, f"no decision logged for event id {event_id!r}")
        labels = await self._log(self.rt.log.labels_for, [event_id])
        label = labels.get(event_id)
        lsn = found.get("lsn")  # the event of this very decision
        event = await self._log(self.rt.log.logged_event, event_id,
                                lsn=lsn if type(lsn) is int else None)
        return self.render(request, "decision.html", session=session, d=found,
                           label=None if label is None else label.to_dict(), event=event)

    async def _log(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await read_log(call, *args, **kwargs)

    # -- entity

    async def entity(self, request: Request) -> Response:
        session = self.session(request)
        scene, runtime = self.scene(self.query(request, "scene", 200))
        keys = sorted({s.by[0] for s in runtime.config.features if len(s.by) == 1})
        key = self.query(request, "field", 200) or (keys[0] if keys else None)
        value = self.query(request, "value")
        as_of: int | None = None
        features: dict[str, Any] | None = None
        if value is not None and key is not None:
            if key not in keys:
                raise PageError(404, f"no feature of scene {scene!r} is keyed by "
                                     f"{key[:100]!r} alone; keys: {', '.join(keys)}")
            try:
                as_of, features = self.rt.engine.entity(scene, key, value)
            except STATE_ERRORS as exc:
                raise PageError(503, f"the shared state cannot be read: {exc}") from None
            except KeyError:
                raise PageError(404, f"no feature of scene {scene!r} is keyed by "
                                     f"{key[:100]!r} alone") from None
        return self.render(request, "entity.html", session=session, scene=scene, keys=keys,
                           key=key, value=value, as_of=as_of, features=features)

    # -- rules

    def _rules_page(self, request: Request, session: Session, scene: str, *, status: int = 200,
                    text: str | None = None, error: dict[str, Any] | None = None,
                    notice: str | None = None) -> HTMLResponse:
        live = self.rt.rulesets.active(scene)
        versions = self.rt.rulesets.versions(scene)
        return self.render(request, "rules.html", status, session, scene=scene,
                           live=live.to_dict(), versions=versions,
                           text=_body_text(live.to_dict()) if text is None else text,
                           error=error, notice=notice)

    async def rules(self, request: Request) -> Response:
        session = self.session(request)
        scene, _ = self.scene(self.query(request, "scene", 200))
        saved = self.query(request, "live", 100)
        notice = None if saved is None else f"version {saved} is live"
        return self._rules_page(request, session, scene, notice=notice)

    async def diff(self, request: Request) -> Response:
        session = self.session(request)
        scene, _ = self.scene(self.query(request, "scene", 200))
        texts = []
        for name in ("a", "b"):
            version = self.query(request, name, 100)
            ruleset = None if version is None else self.rt.rulesets.get(scene, version)
            if version is None or ruleset is None:
                raise PageError(404, f"scene {scene!r} has no ruleset version "
                                     f"{(version or '')[:100]!r}")
            texts.append((version, _body_text(ruleset.to_dict()).splitlines()))
        (a, a_lines), (b, b_lines) = texts
        lines = list(difflib.unified_diff(a_lines, b_lines, a, b, lineterm=""))
        return self.render(request, "diff.html", session=session, scene=scene, a=a, b=b,
                           lines=lines)

    async def save_rules(self, request: Request) -> Response:
        session, form = await self.posted(request)
        scene, _ = self.scene(form.get("scene"))
        text = form.get("ruleset", "")
        try:
            body = orjson.loads(text)  # a depth limit, unlike json (RecursionError)
        except orjson.JSONDecodeError as exc:
            return self._rules_page(request, session, scene, status=422, text=text, error={
                "message": f"not JSON: {exc.msg}", "line": exc.lineno, "column": exc.colno,
                "rule_id": None})
        try:
            ruleset = await asyncio.to_thread(self.rt.rulesets.build, scene, body)
        except RuleCompileError as exc:
            return self._rules_page(request, session, scene, status=422, text=text, error={
                "message": str(exc), "line": exc.line, "column": exc.column,
                "rule_id": exc.rule_id})
        except (ConfigError, RecursionError) as exc:
            return self._rules_page(request, session, scene, status=422, text=text, error={
                "message": str(exc)[:2000], "line": None, "column": None, "rule_id": None})
        self.rt.rulesets.put(scene, ruleset, source="api", activate=True)
        return RedirectResponse(
            f"{PREFIX}/rules?{urlencode({'scene': scene, 'live': ruleset.version})}",
            status_code=303, headers=SECURITY_HEADERS)

    async def activate(self, request: Request) -> Response:
        _, form = await self.posted(request, 16 * 1024)
        scene, _ = self.scene(form.get("scene"))
        version = field(form, "version", required=True, max_chars=100) or ""
        if self.rt.rulesets.activate(scene, version) is None:
            raise PageError(404, f"scene {scene!r} has no ruleset version {version!r}")
        return RedirectResponse(
            f"{PREFIX}/rules?{urlencode({'scene': scene, 'live': version})}",
            status_code=303, headers=SECURITY_HEADERS)

    # -- lists

    def _list_name(self, name: str | None) -> str | None:
        names = self.rt.list_catalog.names()
        if name is None:
            return names[0] if names else None
        if name not in names:
            raise PageError(404, f"unknown list {name[:100]!r}; lists: {', '.join(names)}")
        return name

    async def lists(self, request: Request) -> Response:
        session = self.session(request)
        name = self._list_name(self.query(request, "name", 200))
        catalog = self.rt.list_catalog
        entries = [] if name is None else [e.to_dict() for e in catalog.entries(name)]
        return self.render(request, "lists.html", session=session, names=catalog.names(),
                           name=name, entries=entries,
                           reason="" if name is None else catalog.reason(name))

    async def add_entry(self, request: Request) -> Response:
        _, form = await self.posted(request, 64 * 1024)
        name = self._list_name(field(form, "name", required=True, max_chars=200)) or ""
        value = field(form, "value", required=True) or ""
        try:
            await asyncio.to_thread(self.rt.lists.put, name, value,
                                    expires=field(form, "expires", max_chars=64),
                                    reason=field(form, "reason") or "")
        except ListError as exc:
            raise PageError(422, str(exc)) from None
        return _to_list(name)

    async def remove_entry(self, request: Request) -> Response:
        _, form = await self.posted(request, 64 * 1024)
        name = self._list_name(field(form, "name", required=True, max_chars=200)) or ""
        value = field(form, "value", required=True) or ""
        if not await asyncio.to_thread(self.rt.lists.delete, name, value):
            raise PageError(404, f"{value[:100]!r} is not on list {name!r}")
        return _to_list(name)


def _to_list(name: str) -> Response:
    return RedirectResponse(f"{PREFIX}/lists?{urlencode({'name': name})}", status_code=303,
                            headers=SECURITY_HEADERS)


def _body_text(ruleset: dict[str, Any]) -> str:
    """The editable JSON of a ruleset: what the admin API's PUT takes."""
    return json.dumps({"rules": ruleset["rules"], "policy": ruleset["policy"]}, indent=2,
                      ensure_ascii=False)

