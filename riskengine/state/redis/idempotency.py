"""Whole-event idempotency in Redis: event id → the decision first given for it.

A record is remembered while the event's time is `> G − L − Wmax(scene)` (the contract's
horizon, checked with the scene clock G of the event's clock step, read in the same
pipeline as the record: `RedisState`), and a wall-clock TTL of the same
length, at least 10 minutes, frees it in Redis (assuming event time runs like wall time:
a stream whose event time stops for longer than that forgets ids it would still remember
in memory, and a retry of one after that is decided again; this store's own `ttl_ms`
sets a longer TTL). Unlike the in-memory engine there is no count cap
(`idempotency_max`): Redis memory limits apply instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from riskengine.state.redis import functions
from riskengine.state.redis.functions import Client
from riskengine.state.redis.store import MIN_TTL_MS, Script, load_script


class RedisDecisionStore:
    """event id → ``<t>|<decision record>`` for one scene; the first decision wins.

    The record at `key(id)` is read before deciding (in the pipeline of the clock step)
    and judged by `live`; `remember` after (``SET … NX GET``): when two workers race on
    one id, the second `remember` returns the first decision, which is the one to answer
    with.
    `client` is a `redis.Redis` or a `RedisCluster`: a record is one key, its script is
    loaded on every primary again when one answers NOSCRIPT.
    """

    def __init__(self, client: Client, scene: str, horizon_ms: int, *,
                 prefix: str = "re", ttl_ms: int | None = None) -> None:
        self.client = client
        self.scene = scene
        self.horizon_ms = horizon_ms
        self.ttl_ms = max(horizon_ms, MIN_TTL_MS) if ttl_ms is None else ttl_ms
        self.prefix = prefix
        self._script = Script.of(load_script("remember.lua"))

    def key(self, event_id: str) -> str:
        return f"{self.prefix}:id:{{{self.scene}|{event_id}}}"

    def live(self, raw: bytes | str | None, clock: int | None) -> bytes | None:
        """The whole record, ``<t>|<decision>``, unless there is none or it is past the
        horizon at the scene clock `clock`."""
        if raw is None:
            return None
        data = raw.encode() if isinstance(raw, str) else raw
        t, _, _ = data.partition(b"|")
        if clock is not None and int(t) <= clock - self.horizon_ms:
            return None
        return data

    def remember(self, event_id: str, t: int, decision: str | bytes, clock: int | None
                 ) -> bytes | None:
        """Store the decision unless a live one is there; returns that one if it is. One
        ``SET … NX GET`` (a native command: the first decision wins); a record found that
        is past the horizon but not yet expired is replaced by the script, atomically."""
        return self.remember_many([(event_id, t, decision, clock)])[0]

    def remember_many(self, records: Sequence[tuple[str, int, str | bytes, int | None]]
                      ) -> list[bytes | None]:
        """`remember` of each ``(event id, t, decision, clock)``, pipelined in one round
        trip (one more per record found past the horizon); raises the first error a
        call answered."""
        commands = [self._set_first(event_id, t, decision)
                    for event_id, t, decision, _ in records]
        client = self.client
        replies: list[Any]
        if isinstance(client, redis.Redis) and client.connection is None:  # pooled
            replies = functions.exchange(client, commands)
        else:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command, get=True)
            replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [self._settled(old, event_id, t, decision, clock)
                for old, (event_id, t, decision, clock) in zip(replies, records, strict=True)]

    def _set_first(self, event_id: str, t: int, decision: str | bytes) -> tuple[Any, ...]:
        """The ``SET`` of a record only where there is none, answering the one there
        (sent with the option ``get=True``, which keeps redis-py from reading that
        answer as a yes or no)."""
        value = f"{t}|".encode() + (decision.encode() if isinstance(decision, str)
                                    else decision)
        command = ("SET", self.key(event_id), value, "NX", "GET")
        return (*command, "PX", self.ttl_ms) if self.ttl_ms > 0 else command

    def _settled(self, old: Any, event_id: str, t: int, decision: str | bytes,
                 clock: int | None) -> bytes | None:
        """What `remember` answers after its ``SET … NX GET`` found `old` (None: it set)."""
        if old is None:
            return None
        live = self.live(old, clock)
        if live is not None:
            return live
        return self._replace_stale(event_id, t, decision, clock)

    def _replace_stale(self, event_id: str, t: int, decision: str | bytes,
                       clock: int | None) -> bytes | None:
        """The script: the record unless a live one is there (checked again, atomically:
        another worker may have replaced the stale one first)."""
        horizon: int | str = "" if clock is None else clock - self.horizon_ms
        args = (t, decision, horizon, self.ttl_ms)
        key = self.key(event_id)
        try:
            old = self.client.evalsha(self._script.sha, 1, key, *args)
        except redis.exceptions.NoScriptError:
            self.client.script_load(self._script.source)
            old = self.client.evalsha(self._script.sha, 1, key, *args)
        return self.live(old, clock)
