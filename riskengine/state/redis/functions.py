"""Redis Functions libraries and pipelined FCALLs, on one Redis or a Redis Cluster.

A `Library` is loaded once per server (`FUNCTION LOAD REPLACE`, on every primary of a
cluster) and its functions are then called by name. `FunctionCaller.run` sends a batch of
calls in one pipeline: on one server, one round trip; on a cluster, each call goes to
the primary of its first key's slot (the keys of one call share a hash tag), the
commands for all nodes are written before any reply is read, so a batch still costs
about one round trip. A node that answers "Function not found" (restarted, flushed,
new after a resharding) gets the library again and only the calls it refused are sent
again: the others ran, and must not run twice.

Needs Redis 7.0 or later (FUNCTION / FCALL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from riskengine.state.redis.codec import RedisStateError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # redis-py packs the commands itself
    _hiredis_pack = None

Client = redis.Redis | RedisCluster
Call = tuple[str, Sequence[str], Sequence[Any]]
"""(function name, keys, arguments) of one FCALL."""


@dataclass(frozen=True, slots=True)
class Library:
    """A Redis Functions library: `code` starts with its `#!lua name=<name>` line."""

    name: str
    code: str

    @classmethod
    def build(cls, prefix: str, body: str, registrations: Sequence[tuple[str, str]]
              ) -> tuple[Library, dict[str, str]]:
        """A library named by the digest of its content, and its function names.

        `registrations` are (local name, Lua expression of the callback); function names
        are global in Redis, so each becomes `<prefix>_<digest>_<local name>`.
        """
        digest = hashlib.sha1(repr((body, tuple(registrations))).encode()).hexdigest()[:16]
        names = {local: f"{prefix}_{digest}_{local}" for local, _ in registrations}
        lines = [f"#!lua name={prefix}_{digest}", body]
        lines += [f"redis.register_function('{names[local]}', {callback})"
                  for local, callback in registrations]
        return cls(f"{prefix}_{digest}", "\n".join(lines) + "\n"), names


def _function_missing(answer: object) -> bool:
    return (isinstance(answer, redis.exceptions.ResponseError)
            and str(answer).startswith("Function not found"))


class FunctionCaller:
    """Runs FCALL batches of one library on `client` (`redis.Redis` or `RedisCluster`).

    `resend`: on one server, a batch whose connection failed (closed or reset, not timed
    out) is sent once more on a new connection; only for functions that answer a
    repeated call without applying it twice (the entity functions with a guard).
    """

    def __init__(self, client: Client, library: Library, what: str, *,
                 resend: bool = False) -> None:
        self.client = client
        self.library = library
        self.what = what
        self.resend = resend
        # redis-py's cluster client is untyped: Any keeps mypy --strict meaningful here
        self._cluster: Any = client if isinstance(client, RedisCluster) else None
        self._server: redis.Redis | None = client if isinstance(client, redis.Redis) \
            else None
        self.load()

    @property
    def one_server(self) -> bool:
        """The client is on one server, not a cluster."""
        return self._server is not None

    def load(self, node: Any = None) -> None:
        """FUNCTION LOAD REPLACE the library: on `node`, else on the server or every
        primary of the cluster."""
        try:
            if self._cluster is not None and node is not None:
                self._cluster.execute_command("FUNCTION LOAD", "REPLACE", self.library.code,
                                              target_nodes=node)
            else:
                self.client.function_load(self.library.code, replace=True)
        except redis.exceptions.ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise RedisStateError(f"{self.what}: the Redis server does not know "
                                      f"FUNCTION LOAD; Redis 7.0 or later is needed") from exc
            raise RedisStateError(f"{self.what}: Redis refused to load the function "
                                  f"library {self.library.name}: {exc}") from exc

    def run(self, calls: Sequence[Call]) -> list[Any]:
        """The replies of `calls`, in order, from one pipelined round trip (two when a
        node had lost the library)."""
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            answers = self._send([calls[i] for i in todo])
            missing = []
            for i, answer in zip(todo, answers, strict=True):
                if _function_missing(answer):
                    missing.append(i)
                elif isinstance(answer, Exception):
                    raise RedisStateError(
                        f"{self.what}: Redis refused {calls[i][0]} on key "
                        f"{calls[i][1][0]!r}: {answer}") from answer
                else:
                    replies[i] = answer
            if not missing:
                return replies
            if attempt == 0:
                self._reload([calls[i] for i in missing])
            todo = missing
        raise RedisStateError(f"{self.what}: function library {self.library.name} keeps "
                              f"missing on the server after FUNCTION LOAD")

    def _send(self, calls: Sequence[Call]) -> list[Any]:
        cluster, server = self._cluster, self._server
        if server is not None:
            if server.connection is not None:  # a single-connection client
                pipe: Any = server.pipeline(transaction=False)
                for name, keys, args in calls:
                    pipe.execute_command("FCALL", name, len(keys), *keys, *args)
                return list(pipe.execute(raise_on_error=False))
            commands = [("FCALL", name, len(keys), *keys, *args) for name, keys, args in calls]
            try:
                return exchange(server, commands)
            except redis.exceptions.TimeoutError:
                # never sent again: the call may still run (it waits in a slow server's
                # input), and a copy would be applied twice once more events of an entity
                # than its guard remembers ran in between
                raise
            except redis.exceptions.ConnectionError:
                if not self.resend:
                    raise
                # once more on a new connection (a pooled one may have gone stale); the
                # entity guard answers a call that did run the first time from its record
                return exchange(server, commands)
        cpipe = cluster.pipeline()
        for name, keys, args in calls:
            # routed by the first key: the cluster client would otherwise ask the
            # server for an FCALL's keys (COMMAND GETKEYS) on every call
            cpipe.execute_command("FCALL", name, len(keys), *keys, *args,
                                  target_nodes=cluster.get_node_from_key(keys[0]))
        return list(cpipe.execute(raise_on_error=False))

    def _reload(self, calls: Sequence[Call]) -> None:
        if self._cluster is None:
            self.load()
            return
        nodes = {}
        for _, keys, _ in calls:
            node = self._cluster.get_node_from_key(keys[0])
            nodes[node.name] = node
        for node in nodes.values():
            self.load(node)


def exchange(server: redis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Write every command, then read every reply (raw: no response callbacks; an error
    reply in its place), on one pooled connection of `server`: what a redis-py pipeline
    does, without its per-command bookkeeping."""
    pool = server.connection_pool
    connection: Any = pool.get_connection()  # untyped in redis-py
    try:
        if _hiredis_pack is not None and connection.encoder.encoding == "utf-8":
            payload = [b"".join([_hiredis_pack(command) for command in commands])]
        else:
            payload = connection.pack_commands(commands)
        connection.send_packed_command(payload, check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
