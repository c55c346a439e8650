"""Run the service on uvicorn (uvloop + httptools; the evaluate requests answered by the
protocol itself, protocol.py).

One worker: the app is built here and served by one process. Several workers need state
shared between processes (`--state redis://…`): uvicorn starts N processes, each builds
its own runtime from the settings passed in ``RISKENGINE_SERVICE_SETTINGS``
(`worker_app`). With in-memory state each worker would count only its own events, so
`--workers` above 1 is refused without shared state.
"""

from __future__ import annotations

import logging
import os

import uvicorn

from riskengine.service.app import create_app
from riskengine.service.lane import EvaluateLane, evaluate_lane
from riskengine.service.protocol import EvaluateProtocol
from riskengine.service.runtime import ServiceRuntime
from riskengine.service.settings import ServiceSettings


class WorkersNeedSharedState(ValueError):
    pass


SETTINGS_ENV = "RISKENGINE_SERVICE_SETTINGS"


def worker_app() -> EvaluateLane:
    """The app of one worker process (uvicorn factory)."""
    runtime = ServiceRuntime(ServiceSettings.from_env(os.environ[SETTINGS_ENV]))
    return evaluate_lane(create_app(runtime=runtime, lane=False), runtime)


def run_workers(settings: ServiceSettings, *, host: str, port: int, workers: int,
                log_level: str = "info") -> None:
    """Serve with `workers` processes sharing the state in Redis."""
    if settings.state is None:
        raise WorkersNeedSharedState(
            "--workers above 1 needs state shared by the workers (--state redis://…); "
            "with in-memory state each worker would see only its own events")
    from riskengine.config import load_config
    from riskengine.state.redis.backend import refuse_other_layouts

    # each worker would refuse state of another layout or invalid service settings and
    # exit, and be started again: refuse them here, once
    config = load_config(settings.config)
    settings.with_service_section(config.service)
    refuse_other_layouts(str(settings.state), config.scenes)
    os.environ[SETTINGS_ENV] = settings.to_env()
    uvicorn.run("riskengine.service.server:worker_app", factory=True, host=host, port=port,
                workers=workers, loop="uvloop", http=EvaluateProtocol, access_log=False,
                log_level=log_level, lifespan="on", timeout_graceful_shutdown=10,
                server_header=False, proxy_headers=False, date_header=False)


def build_server(settings: ServiceSettings, *, host: str, port: int, workers: int = 1,
                 log_level: str = "info") -> tuple[uvicorn.Server, ServiceRuntime]:
    if workers != 1:
        raise WorkersNeedSharedState("use run_workers for more than one worker")
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = ServiceRuntime(settings)
    app = evaluate_lane(create_app(runtime=runtime, lane=False), runtime)
    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http=EvaluateProtocol,
                            access_log=False, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=10, server_header=False,
                            proxy_headers=False, date_header=False)
    return uvicorn.Server(config), runtime
