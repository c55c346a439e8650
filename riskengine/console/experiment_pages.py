"""The console's experiments page: the live experiment of a scene (key, salt, split, each
arm's mode and ruleset version), the comparison of its arms read from the decision log
(the tables of ``riskengine experiments report`` and charts), and the forms that change
it: put an experiment live (the JSON ``PUT /v1/scenes/{scene}/experiment`` takes),
promote a challenger, stop the experiment. Promotion and stopping go through a
confirmation page whose form names the experiment version it confirms: if another
change made a different version live meanwhile, the form is refused (409).

Every change calls the same registry methods as the admin API (riskengine/service/
experiment_routes.py), and the comparison is the API's (`live_comparison`).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from riskengine.batch.backtest_report import experiment_tables
from riskengine.batch.metrics import AMOUNT_FIELD
from riskengine.console.charts import comparison_charts
from riskengine.console.forms import PageError, event_time, field, read_log
from riskengine.console.routes import PREFIX, SECURITY_HEADERS, Console, Handler
from riskengine.exceptions import ConfigError
from riskengine.experiment import CHAMPION
from riskengine.service.experiment_comparison import live_comparison
from riskengine.service.experiments import UnknownArmError

if TYPE_CHECKING:
    from riskengine.console.session import Session

__all__ = ["ExperimentPages", "see_other"]

MAX_EXPERIMENT_BYTES = 1024 * 1024


def see_other(path: str, **params: str) -> Response:
    """A 303 redirect to a console page (after a form POST)."""
    query = f"?{urlencode(params)}" if params else ""
    return RedirectResponse(f"{PREFIX}{path}{query}", status_code=303,
                            headers=SECURITY_HEADERS)


class ExperimentPages:
    """The routes of the module docstring, on `console` (its session, CSRF and render)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rt = console.rt
        self.get: list[tuple[str, Handler]] = [
            ("/experiments", self.page), ("/experiments/confirm", self.confirm)]
        self.post: list[tuple[str, Handler]] = [
            ("/experiments/put", self.put), ("/experiments/promote", self.promote),
            ("/experiments/stop", self.stop)]

    # -- the page

    async def page(self, request: Request) -> Response:
        session = self.console.session(request)
        scene, _ = self.console.scene(self.console.query(request, "scene", 200))
        return await self._render(request, session, scene)

    async def _render(self, request: Request, session: Session, scene: str, *,
                      status: int = 200, text: str | None = None,
                      error: str | None = None) -> Response:
        query = self.console.query
        since_text, until_text = query(request, "since", 64), query(request, "until", 64)
        amount_field = query(request, "amount_field", 200) or AMOUNT_FIELD
        report = await read_log(live_comparison, self.rt, scene,
                                since=event_time(since_text, "since"),
                                until=event_time(until_text, "until"),
                                amount_field=amount_field)
        live = self.rt.experiments.describe(scene)
        versions = [{"version": tally["version"], "live": tally["version"] ==
                     report["live_experiment"], "first_event": tally["first_event"],
                     "last_event": tally["last_event"],
                     "tables": experiment_tables(scene, tally),
                     "charts": comparison_charts(tally["comparison"])}
                    for tally in report["experiments"]]
        return self.console.render(
            request, "experiments.html", status, session, scene=scene, live=live,
            champion=self.rt.engine.ruleset(scene).version,
            arms=[] if live is None else self._arms(scene, live), report=report,
            versions=versions, error=error,
            text=self._editor_text(scene, live) if text is None else text,
            period={"since": since_text or "", "until": until_text or "",
                    "amount_field": amount_field},
            notice=self._notice(request))

    def _arms(self, scene: str, live: dict[str, Any]) -> list[dict[str, Any]]:
        """The live experiment's arms: name, mode, share, ruleset version, rule count."""
        spec = live["experiment"]
        split = spec["split"]
        rows = [{"name": CHAMPION, "mode": "decide", "share": split.get(CHAMPION, 0.0),
                 "ruleset_version": live["ruleset_versions"][CHAMPION],
                 "rules": len(self.rt.engine.ruleset(scene).rules), "from_version": None}]
        for name, arm in spec["challengers"].items():
            rows.append({"name": name, "mode": arm["mode"], "share": split.get(name),
                         "ruleset_version": live["ruleset_versions"][name],
                         "rules": len(arm["rules"]),
                         "from_version": arm.get("ruleset_version")})
        return rows

    def _editor_text(self, scene: str, live: dict[str, Any] | None) -> str:
        """The live experiment's JSON; without one, a shadow challenger of the newest
        stored ruleset version to start from."""
        if live is not None:
            return json.dumps(live["experiment"], indent=2, ensure_ascii=False)
        versions = self.rt.rulesets.versions(scene)
        others = [v["version"] for v in versions if not v["active"]]
        newest = others[-1] if others else self.rt.engine.ruleset(scene).version
        schema = [f.name for f in self.rt.engine.scene(scene).config.schema]
        return json.dumps({"key": schema[0] if schema else "event_id", "salt": "1",
                           "split": {CHAMPION: 100},
                           "challengers": {"candidate": {"mode": "shadow",
                                                         "ruleset_version": newest}}},
                          indent=2)

    def _notice(self, request: Request) -> str | None:
        query = self.console.query
        promoted, version = query(request, "promoted", 100), query(request, "version", 100)
        if promoted is not None:
            return f"{promoted} was promoted: ruleset version {version} is the champion"
        stopped = query(request, "stopped", 100)
        if stopped is not None:
            return f"experiment {stopped} was stopped: the champion alone decides"
        started = query(request, "started", 100)
        if started is not None:
            return f"experiment {started} is live"
        return None

    # -- changing it

    async def put(self, request: Request) -> Response:
        session, form = await self.console.posted(request, MAX_EXPERIMENT_BYTES + 16 * 1024)
        scene, _ = self.console.scene(form.get("scene"))
        text = form.get("experiment", "")

        async def refused(message: str) -> Response:
            return await self._render(request, session, scene, status=422, text=text,
                                      error=message[:2000])

        try:
            body = orjson.loads(text)  # a depth limit, unlike json (RecursionError)
        except orjson.JSONDecodeError as exc:
            return await refused(f"not JSON: {exc.msg} at line {exc.lineno}, column "
                                 f"{exc.colno}")
        try:
            experiment = await asyncio.to_thread(self.rt.experiments.build, scene, body)
        except (ConfigError, RecursionError) as exc:  # a refused rule is a ConfigError too
            return await refused(str(exc))
        self.rt.experiments.put(scene, experiment, source="api")
        return see_other("/experiments", scene=scene, started=experiment.version)

    def _live_version(self, scene: str, confirmed: str | None) -> str:
        """The live experiment's version, which the confirmed form must name."""
        live = self.rt.experiments.live(scene)
        if live is None:
            raise PageError(404, f"scene {scene!r} has no experiment")
        if confirmed is not None and confirmed != live.version:
            raise PageError(409, f"the live experiment of {scene!r} is {live.version} now, "
                                 f"not {confirmed[:20]}; nothing was changed, look again")
        return live.version

    async def confirm(self, request: Request) -> Response:
        session = self.console.session(request)
        scene, _ = self.console.scene(self.console.query(request, "scene", 200))
        action = self.console.query(request, "action", 20)
        if action not in ("promote", "stop"):
            raise PageError(422, "action must be promote or stop")
        version = self._live_version(scene, None)
        live = self.rt.experiments.describe(scene)
        assert live is not None  # _live_version found it
        arm = None
        if action == "promote":
            name = field(request.query_params, "arm", required=True, max_chars=64) or ""
            arm = next((a for a in self._arms(scene, live)
                        if a["name"] == name and name != CHAMPION), None)
            if arm is None:
                raise PageError(404, f"the live experiment of {scene!r} has no challenger "
                                     f"{name!r}")
        return self.console.render(request, "experiment_confirm.html", session=session,
                                   scene=scene, action=action, version=version, arm=arm)

    async def promote(self, request: Request) -> Response:
        _, form = await self.console.posted(request, 16 * 1024)
        scene, _ = self.console.scene(form.get("scene"))
        arm = field(form, "arm", required=True, max_chars=64) or ""
        self._live_version(scene, field(form, "version", required=True, max_chars=20))
        try:
            champion, _ = self.rt.experiments.promote(scene, arm)
        except UnknownArmError as exc:
            raise PageError(404, str(exc)) from None
        return see_other("/experiments", scene=scene, promoted=arm, version=champion.version)

    async def stop(self, request: Request) -> Response:
        _, form = await self.console.posted(request, 16 * 1024)
        scene, _ = self.console.scene(form.get("scene"))
        version = self._live_version(scene, field(form, "version", required=True,
                                                  max_chars=20))
        if not self.rt.experiments.end(scene):
            raise PageError(404, f"scene {scene!r} has no experiment")
        return see_other("/experiments", scene=scene, stopped=version)
