"""The console's backtest pages: the reports in the service's backtest reports' directory
(``riskengine backtest --report DIR`` into it, or the backtests started here), each
report.json shown with the tables the CLI prints (`backtest_report.tables`) and charts,
and a form that backtests a stored ruleset version against the live one on the decision
log's events of a period (riskengine/service/log_backtests.py), one at a time, in a
background thread; its state is polled by the page while it runs.

A report name from the query string is confined to the directory (`ReportStore`): a
name that is not one plain path component, or leads out of it, is a 404; a report.json
that cannot be read as a backtest report is a 422 naming why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from riskengine.batch.backtest_report import ReportError, tables
from riskengine.batch.report_store import (
    ReportNotFoundError,
    ReportStore,
    ReportUnreadableError,
)
from riskengine.console.charts import comparison_charts
from riskengine.console.experiment_pages import see_other
from riskengine.console.forms import PageError, event_time, field
from riskengine.console.routes import Console, Handler
from riskengine.exceptions import UnknownSceneError
from riskengine.service.log_backtests import (
    MAX_EVENTS,
    BacktestBusyError,
    LogBacktests,
    UnknownVersionError,
)

if TYPE_CHECKING:
    from riskengine.console.session import Session

__all__ = ["DEFAULT_EVENTS", "BacktestPages"]

DEFAULT_EVENTS = 100_000
LOG_RUNNER = "decision log"
"""The runner name of the backtests started here: their events are in the decision log,
so their sample event ids link to the decision pages."""


class BacktestPages:
    """The routes of the module docstring, on `console`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rt = console.rt
        self.store = ReportStore(console.rt.settings.backtests)
        self.runner = LogBacktests(console.rt, self.store)
        self.get: list[tuple[str, Handler]] = [
            ("/backtests", self.page), ("/backtests/job", self.job), ("/backtest", self.report)]
        self.post: list[tuple[str, Handler]] = [("/backtests/run", self.run)]

    # -- the list and the form

    async def page(self, request: Request) -> Response:
        session = self.console.session(request)
        return self._list(request, session)

    def _list(self, request: Request, session: Session, *, status: int = 200,
              error: str | None = None, form: dict[str, str] | None = None) -> Response:
        query = self.console.query
        scene, _ = self.console.scene((form or {}).get("scene") or query(request, "scene", 200))
        listing_error = None
        try:
            reports = self.store.summaries()
        except ReportUnreadableError as exc:  # the directory itself cannot be read
            reports, listing_error = [], str(exc)
            status = 503 if status == 200 else status
        versions = self.rt.rulesets.versions(scene)
        chosen = {"scene": scene,
                  "version": (form or {}).get("version") or query(request, "version", 100)
                  or next((v["version"] for v in reversed(versions) if not v["active"]), ""),
                  "since": (form or {}).get("since", ""), "until": (form or {}).get("until", ""),
                  "limit": (form or {}).get("limit") or str(DEFAULT_EVENTS)}
        return self.console.render(
            request, "backtests.html", status, session, reports=reports,
            listing_error=listing_error,
            directory=str(self.store.root), job=self._job(), versions=versions,
            live=self.rt.engine.ruleset(scene).version, form=chosen, error=error,
            max_events=MAX_EVENTS)

    def _job(self) -> dict[str, Any] | None:
        job = self.runner.job
        return None if job is None else job.to_dict()

    async def job(self, request: Request) -> Response:
        """The state of the latest backtest (the page polls it while it runs); once it
        is no longer running, a polling page reloads itself so its list shows the
        report."""
        session = self.console.session(request)
        job = self._job()
        response = self.console.render(request, "backtest_job.html", session=session,
                                       job=job)
        if request.headers.get("HX-Request") == "true" and (job or {}).get("state") != \
                "running":
            response.headers["HX-Refresh"] = "true"
        return response

    async def run(self, request: Request) -> Response:
        session, form = await self.console.posted(request, 16 * 1024)
        scene = self.console.scene(form.get("scene"))[0]
        version = field(form, "version", required=True, max_chars=100) or ""
        since = event_time(field(form, "since", max_chars=64), "since")
        until = event_time(field(form, "until", max_chars=64), "until")
        limit_text = field(form, "limit", max_chars=12) or str(DEFAULT_EVENTS)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_EVENTS:
            raise PageError(422, f"events must be a whole number from 1 to {MAX_EVENTS:,}")
        try:
            job = self.runner.start(scene, version, since=since, until=until,
                                    limit=int(limit_text))
        except BacktestBusyError as exc:
            return self._list(request, session, status=409, error=str(exc), form=form)
        except UnknownVersionError as exc:
            return self._list(request, session, status=404, error=str(exc), form=form)
        except (ValueError, ReportError, UnknownSceneError) as exc:
            return self._list(request, session, status=422, error=str(exc), form=form)
        return see_other("/backtests", scene=scene, started=job.name)

    # -- one report

    async def report(self, request: Request) -> Response:
        session = self.console.session(request)
        name = field(request.query_params, "name", required=True, max_chars=300) or ""
        try:
            doc = self.store.read(name)
        except ReportNotFoundError as exc:
            raise PageError(404, str(exc)) from None
        except ReportUnreadableError as exc:
            raise PageError(422, str(exc)) from None
        try:
            built = tables(doc)
            charts = comparison_charts(doc)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise PageError(422, f"report {name!r} is not a backtest report this version "
                                 f"reads: {type(exc).__name__} {exc}"[:500]) from None
        overview, *rest = built
        return self.console.render(request, "backtest.html", session=session, name=name,
                                   run=doc["run"], overview=overview, tables=rest,
                                   charts=charts,
                                   link_ids=doc["run"].get("runner") == LOG_RUNNER)
