"""What the service's and the stream worker's /metrics export, from a real service in
process (Redis state from a private redis-server, so the state breaker is listed too; a
few demo transfers sent) and a worker's metrics registry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from riskengine.service import ServiceSettings, create_app
from riskengine.stream.metrics import StreamMetrics
from riskengine.synth import generate_transfers
from tests.deploy.promql import selectors
from tests.servers import redis_server
from tests.service.helpers import ADMIN

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                             "_created"),
            "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "unknown": ("",)}
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
"""Series Prometheus writes itself for every target."""
TARGET_LABELS = frozenset({"job", "instance"})
"""Labels Prometheus adds to every scraped series."""


@dataclass(frozen=True)
class Exported:
    """The series names a query may read (a counter ``x`` is ``x_total``, a histogram's
    ``x_bucket`` ...) and, for the series that had samples, their label names."""

    names: frozenset[str]
    labels: dict[str, frozenset[str]]

    @classmethod
    def from_pages(cls, *pages: str) -> Exported:
        names: set[str] = set()
        labels: dict[str, set[str]] = {}
        for page in pages:
            for family in text_string_to_metric_families(page):
                names.update(family.name + suffix
                             for suffix in SUFFIXES.get(family.type, ("",)))
                for sample in family.samples:
                    names.add(sample.name)
                    labels.setdefault(sample.name, set()).update(sample.labels)
        return cls(frozenset(names), {name: frozenset(seen) for name, seen in labels.items()})

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def problems(self, expr: str, also: frozenset[str] = frozenset()) -> list[str]:
        """What in `expr` reads a series nobody exports (`also`: names defined elsewhere,
        such as recording rules), or matches on a label its samples do not have."""
        found = []
        for name, matched in selectors(expr):
            if name not in self.names and name not in also and name not in PROMETHEUS_OWN:
                found.append(f"{name} is not exported")
            seen = self.labels.get(name)
            if seen is not None:
                found.extend(f"{name} has no label {label!r}" for label in matched
                             if label not in seen | TARGET_LABELS)
        return found


@pytest.fixture(scope="session")
def service_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The /metrics page of a service on Redis state after some demo traffic."""
    state_dir = tmp_path_factory.mktemp("deploy-service")
    with redis_server() as url:
        settings = ServiceSettings(state_dir=state_dir, admin_token=ADMIN,
                                   watch_config=False, state=url)
        with TestClient(create_app(settings)) as client:
            events = [{k: v for k, v in e.items() if k != "label"}
                      for e in generate_transfers(300, seed=11)]
            for event in events[:200]:
                assert client.post("/v1/transfer/evaluate", json=event).status_code == 200
            batch = client.post("/v1/transfer/evaluate/batch", json=events[200:])
            assert batch.status_code == 200
            assert client.post("/v1/transfer/evaluate", json=[1]).status_code == 422
            yield client.get("/metrics").text


@pytest.fixture(scope="session")
def worker_metrics() -> str:
    """The /metrics page of a stream worker that decided a few messages."""
    metrics = StreamMetrics()
    metrics.record({"decided": 5, "redelivered": 1, "dead_lettered": 1, "rebuilt": 0,
                    "skipped": 0}, {"accept": 4, "review": 1}, 0)
    metrics.lag.labels("transfers", "0").set(3)
    metrics.batch_seconds.observe(0.01)
    return generate_latest(metrics.registry).decode()


@pytest.fixture(scope="session")
def exported(service_metrics: str, worker_metrics: str) -> Exported:
    return Exported.from_pages(service_metrics, worker_metrics)
