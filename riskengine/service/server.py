"""Run the service on uvicorn (uvloop + httptools), one process.

Several workers need state shared between processes (Redis); with in-memory state each
worker would count only its own events, so `--workers` above 1 is refused until then.
"""

from __future__ import annotations

import logging

import uvicorn

from riskengine.service.app import create_app
from riskengine.service.lane import EvaluateLane
from riskengine.service.runtime import ServiceRuntime
from riskengine.service.settings import ServiceSettings


class WorkersNeedSharedState(ValueError):
    pass


def build_server(settings: ServiceSettings, *, host: str, port: int, workers: int = 1,
                 log_level: str = "info") -> tuple[uvicorn.Server, ServiceRuntime]:
    if workers != 1:
        raise WorkersNeedSharedState(
            "--workers above 1 needs state shared by the workers (Redis); with in-memory "
            "state each worker would see only its own events")
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = ServiceRuntime(settings)
    app = EvaluateLane(create_app(runtime=runtime, lane=False), runtime)
    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools",
                            access_log=False, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=10, server_header=False,
                            proxy_headers=False, date_header=False)
    return uvicorn.Server(config), runtime
