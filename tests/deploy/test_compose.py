"""deploy/docker-compose.yml: `docker compose config` accepts it when docker compose is
installed; always: the services of the topology, each with an image or a build whose
files exist, every mounted file in the repository, valid and distinct published ports,
riskengine commands the CLI accepts, and the addresses Prometheus, nginx and Grafana use
match the services."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import yaml
from typer.exceptions import TyperException

from riskengine.cli import app
from tests.deploy.conftest import DEPLOY, ROOT

COMPOSE = DEPLOY / "docker-compose.yml"
TOPOLOGY = {"riskengine", "lb", "redis", "postgres", "kafka", "stream-worker", "prometheus",
            "grafana"}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str) -> str:
    """Compose's ${VAR:-default} as its default, ${VAR:?message} (required) as "set"."""
    def value(match: re.Match[str]) -> str:
        return match["arg"] if match["op"] == "-" else "set"
    return VARIABLE.sub(value, text)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text()))
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None and subprocess.run([docker, "compose", "version"],
                                             capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


@pytest.mark.skipif(compose_cli() is None, reason="docker compose not installed")
def test_docker_compose_config_accepts_it() -> None:
    env = {**os.environ, "RISKENGINE_ADMIN_TOKEN": "t" * 32}
    result = subprocess.run([*(compose_cli() or []), "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr


def test_interpolation_of_the_test_matches_compose_rules() -> None:
    assert interpolate("a ${X:-8000} ${Y:?set Y} $$t") == "a 8000 set $$t"


def test_the_topology_has_its_services_each_with_an_image_or_a_build() -> None:
    assert set(services()) >= TOPOLOGY
    for name, service in services().items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file()
        for dependency in service.get("depends_on", {}):
            assert dependency in services(), (name, dependency)


def test_the_dockerfile_copies_what_exists_and_installs_with_the_lock() -> None:
    build = services()["riskengine"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    text = (context / build["dockerfile"]).read_text()
    copied = [line.split()[1:-1] for line in text.splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    assert copied
    for sources in copied:
        for source in sources:
            assert (context / source).exists(), source
    assert "-c requirements/dev.lock" in text


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    return [(volume.split(":")[0], volume.split(":")[1]) for volume in service.get("volumes", [])]


def test_every_mounted_file_is_in_the_repository_and_volumes_are_declared() -> None:
    declared = set(compose().get("volumes", {}))
    for name, service in services().items():
        for source, target in mounts(service):
            assert target.startswith("/"), (name, target)
            if source.startswith((".", "/")):
                assert (DEPLOY / source).resolve().exists(), (name, source)
                assert ROOT in (DEPLOY / source).resolve().parents, (name, source)
            else:
                assert source in declared, (name, source)


def test_published_ports_are_valid_and_distinct() -> None:
    published: list[int] = []
    for name, service in services().items():
        for port in service.get("ports", []):
            host, container = (int(p) for p in str(port).split(":"))
            assert 0 < host < 65536 and 0 < container < 65536, (name, port)
            published.append(host)
    assert len(published) == len(set(published))
    assert {"lb", "prometheus", "grafana"} <= {n for n, s in services().items()
                                               if s.get("ports")}
    assert "ports" not in services()["riskengine"]  # replicas only behind the lb


def parse(args: list[str]) -> dict[str, Any]:
    """The options of a riskengine command line, parsed by the CLI itself (unknown
    options and bad values raise)."""
    command = typer.main.get_command(app).commands[args[0]]  # type: ignore[attr-defined]
    params: dict[str, Any] = command.make_context(args[0], list(args[1:])).params
    return params


def cli_params(service: str) -> dict[str, Any]:
    return parse(services()[service]["command"])


def in_container(service: str, path: str) -> Path:
    """The repository file that `path` inside the container is mounted from."""
    for source, target in mounts(services()[service]):
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return (DEPLOY / source / os.path.relpath(path, target)).resolve()
    raise AssertionError(f"{path} is not mounted in {service}")


def test_the_service_replicas_share_redis_and_postgresql() -> None:
    params = cli_params("riskengine")
    assert params["host"] == "0.0.0.0" and params["workers"] == 1
    assert params["state"].startswith("redis://redis:6379/")
    assert re.match(r"^postgresql://\w+:[^@]+@postgres:5432/\w+$", params["decision_log"])
    assert in_container("riskengine", str(params["config"])).is_file()
    assert int(services()["riskengine"]["deploy"]["replicas"]) > 1
    environment = services()["riskengine"]["environment"]
    assert environment["RISKENGINE_ADMIN_TOKEN"] == "set"  # required, never a default


def test_the_stream_worker_reads_kafka_and_serves_metrics_to_other_containers() -> None:
    params = cli_params("stream-worker")
    for option in ("source", "sink", "dead_letter"):
        assert params[option].startswith("kafka://kafka:9092/")
    assert params["metrics_host"] == "0.0.0.0"
    assert params["state"].startswith("redis://redis:6379/")
    assert params["state"] != cli_params("riskengine")["state"]
    assert in_container("stream-worker", str(params["config"])).is_file()


def test_a_bad_option_in_a_command_would_be_refused() -> None:
    with pytest.raises(TyperException, match="no-such-option"):
        parse(["serve", "--no-such-option"])
    with pytest.raises(typer.BadParameter, match="integer"):
        parse(["worker", "--source", "kafka://k:1/t", "--metrics-port", "http"])
    assert parse(["worker", "--source", "kafka://k:1/t"])["metrics_host"] == "127.0.0.1"


def test_prometheus_nginx_and_grafana_address_the_services() -> None:
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    service_port = cli_params("riskengine")["port"]
    assert jobs["riskengine"]["dns_sd_configs"] == [
        {"names": ["riskengine"], "type": "A", "port": service_port,
         "refresh_interval": "30s"}]
    worker_port = cli_params("stream-worker")["metrics_port"]
    assert jobs["riskengine-stream"]["static_configs"] == [
        {"targets": [f"stream-worker:{worker_port}"]}]
    for source, target in mounts(services()["prometheus"]):
        if source.startswith("."):
            assert target == f"/etc/prometheus/{Path(source).name}"

    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert f"server riskengine:{service_port};" in nginx
    lb_port = services()["lb"]["ports"][0].split(":")[1]
    assert f"listen {lb_port};" in nginx

    source = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" /
                             "prometheus.yml").read_text())["datasources"][0]
    prometheus_port = services()["prometheus"]["ports"][0].split(":")[1]
    assert source["url"] == f"http://prometheus:{prometheus_port}"
