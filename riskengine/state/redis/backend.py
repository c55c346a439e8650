"""`RedisState`: an engine's state backend with every scene's state in Redis.

Many worker processes built on one Redis decide as one engine would: for the same
events in the same order they give the decisions the in-memory `Engine` gives
(features, late, decision, hits, list hits, ruleset version). Lists, rules and the
ruleset versions stay in each process, exactly as in `Engine`; only the state is shared.

    engine = Engine.from_config("project.yaml",
                                state=RedisState.connect("redis://10.0.0.5:6379/0"))
    decision = engine.evaluate("transfer", event)

Per scene, `RedisSceneFeatures` computes and stores the features, `RedisScenePatterns`
the sequence patterns, and `RedisDecisionStore` is the idempotency guard: a decision is
stored as a compact record (`DecisionRecords`) under its event id, and a duplicate gets
an equal `Decision` rebuilt from it (the first decision's LSN and latency included).

On one server a decision costs two round trips:

1. one atomic call of the scene library's ``event`` function (scripts/entity.lua): the
   idempotency lookup, then, unless a remembered decision is found, the event's
   **clock step** and every entity and sequence-pattern key it touches. A remembered
   decision (its time ``> G − L − Wmax(scene)``, G before the event) is answered as it
   is and changes nothing, not even the clock. The step (`SharedClock`,
   riskengine/state/redis/clock.py) takes, on one key for all scenes, the event's LSN,
   the scene clock G before it and whether it is late (``t < G − L``), and raises G to t
   when it is not late; each entity and pattern is then given t, G and the late flag:
   no key decides lateness, so an event is late on all its keys or on none;
2. remembering the decision.

On a Redis Cluster an event's keys live on several nodes, which no one call can touch,
so three:

1. the clock step and the idempotency lookup, in one pipeline (two nodes, in parallel);
   a remembered decision is answered as it is and, if its step raised G (a duplicate
   with a later time than its first decision), one more call puts G back (its LSN is a
   gap);
2. the entity calls of every key the event touches and its pattern calls, in one
   pipeline (one per node, every command written before any reply is read), each
   given t, G and the late flag;
3. remembering the decision.

LSNs are one arrival order across every process sharing the Redis (one counter, taken
with G), increasing, with gaps (degraded events; duplicates on a cluster). `lsn` is the LSN of this
process's last new decision. With one request in flight at a time, any number of
processes give the in-memory engine's answers on the same sequence, run after run, on
one Redis or a Cluster. Under concurrent requests the clock steps put them in one
order: every event's G and late flag are those of a replay of the decision log in LSN
order; on a cluster, events of one entity that are in flight at the same time are
applied at the entity in the order their calls reach it, which can differ from their LSN
order (on one server the step and the entities are one atomic call: LSN order). Two
narrow exceptions: a fallback answer whose clock step was taken moved G but is not in
the decision log (below), and, on a cluster, a duplicate carrying a later time than its
first decision raises G until its ``unclock`` (events in flight meanwhile are judged
against it).

Time budget, fallback, circuit breaker
--------------------------------------
``state_timeout_ms`` (default 50) bounds every Redis round trip (socket connect and read
timeouts, no client-side retries) and is the request's budget: on a cluster, when the
first round trip has used it up, the event's features are not computed and it is
answered like an outage. A failing round trip ends the request at once, so a degraded
answer comes within about one timeout (two when a closed connection's reconnect times
out; a timed-out call is never sent again, since it may still run).

When Redis cannot be reached, answers an error, runs out of the budget, or the breaker is
open, `evaluate` returns the scene's **fallback** decision (scene key ``fallback:``,
accept / review / reject, default review) with ``degraded: True``, every feature None,
no hits, no list hits, LSN 0, and nothing remembered: a retry of the event is decided
normally once Redis is back. A failure after the features were stored (the remembering)
still returns the real decision, only not remembered: the entities' own guard records
keep a retry of that event from being counted twice while it is their latest event.

**The one place a degraded event moves the clock.** The contract's G counts only events
that reached the state. When the clock step succeeded but its answer never came back
(one server: the connection failed or timed out after the call was sent, and Redis ran
it, maybe later, as when it was frozen and resumed) or a later round trip failed (a
cluster; or the budget ran out after the first), the event is answered with the
fallback, but its step has happened: its LSN is a gap and, if it was on time and later
than G, G is now its time, and its entity calls may have been applied (all of them on
one server; some, on a cluster whose node failed mid-batch). Later events are judged
against that G; its own retry is decided normally (not late by its own doing: its time
is at most G), and the entities' guard records answer it where it was applied. Nothing
puts G back: a partly applied event could then be stored above G.

The `CircuitBreaker` (riskengine/state/breaker.py; defaults: opens after 5 consecutive
failures or a failure rate of 50 % over the last 50 calls, at least 20 of them; 1 s
cooldown; then one probe request) makes an outage cost nothing per request: while it is
open no request waits for Redis. It closes by itself when a probe succeeds.

`stats()` reports per scene the decisions, duplicates, degraded decisions, unremembered
decisions and the breaker's state, for the service's metrics.

One engine is driven by one thread (as `Engine`); scale out with processes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from time import perf_counter
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from riskengine.decision import Decision
from riskengine.exceptions import SnapshotError
from riskengine.lists import Lists
from riskengine.scene import SceneRuntime
from riskengine.state.breaker import CLOSED, OPEN, CircuitBreaker
from riskengine.state.budget import DEFAULT_STATE_TIMEOUT_MS
from riskengine.state.redis.clock import SharedClock, StateFormatError, Step
from riskengine.state.redis.codec import (
    RedisStateError,
    StateUnavailableError,
    event_digest,
)
from riskengine.state.redis.connect import connect, state_options
from riskengine.state.redis.functions import Client
from riskengine.state.redis.idempotency import RedisDecisionStore
from riskengine.state.redis.patterns import RedisScenePatterns
from riskengine.state.redis.records import DecisionRecords
from riskengine.state.redis.store import RedisSceneFeatures

__all__ = ["DEFAULT_STATE_TIMEOUT_MS", "DEFAULT_STATE_URL", "STATE_ERRORS", "RedisState",
           "StateFormatError", "StateUnavailableError", "open_client", "redact",
           "refuse_other_layouts"]

log = logging.getLogger("riskengine.state")
NO_STEP = Step(0, None, False, False)
"""The step of a duplicate answered on one server: none was taken."""
RUN_MAX = 256
"""The most events whose calls go to Redis in one round trip (a longer run is cut): a
pipeline holds the server for the time of all its calls."""
_Computed = tuple["bytes | None", Step, dict[str, Any], bool]
"""An event taken through the state: the decision remembered for its id (a duplicate) or
None, its clock step, its features and whether it is late."""

DEFAULT_STATE_URL = "redis://127.0.0.1:6379/0"
STATE_ERRORS = (redis.exceptions.RedisError, RedisStateError, OSError)
"""What a state call raises when Redis is down, slow or refusing: answered degraded."""


def redact(url: str) -> str:
    """`url` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def open_client(url: str, timeout_ms: int = DEFAULT_STATE_TIMEOUT_MS) -> Client:
    """A client for a state URL (`connect`: ``redis://host:port/db``, ``rediss://``,
    ``unix://``, ``redis+cluster://host:port,host:port``) whose every call gives up after
    `timeout_ms` (connect and read), without client-side retries."""
    if type(timeout_ms) is not int or timeout_ms <= 0:
        raise StateUnavailableError(f"state_timeout_ms must be a positive integer, not "
                                    f"{timeout_ms!r}")
    seconds = timeout_ms / 1000.0
    try:
        return connect(url, socket_timeout=seconds, socket_connect_timeout=seconds,
                       retry=Retry(NoBackoff(), 0))
    except RedisStateError as exc:
        raise StateUnavailableError(str(exc)) from None
    except ValueError as exc:
        raise StateUnavailableError(f"state URL {redact(url)!r}: {exc}") from None
    except (redis.exceptions.RedisError, OSError) as exc:  # a cluster asks for its slots
        raise StateUnavailableError(f"cannot reach the state at {redact(url)}: {exc}; "
                                    f"start Redis or fix the state URL") from None


def refuse_other_layouts(url: str, scenes: Iterable[str], prefix: str = "re") -> None:
    """Raise `StateFormatError` when the state at `url` was written under another layout
    (what every `RedisState` on it would raise at start): for a parent process to refuse
    before it starts workers. Redis not answering is not refused here (the workers start
    degraded until it answers, and check then)."""
    try:
        buckets = state_options(url)[1]
        client = open_client(url, 5000)
    except RedisStateError:  # unreachable, or a malformed URL: refused by the workers
        return
    try:
        SharedClock(client, prefix, buckets).check(list(scenes))
    except StateFormatError:
        raise
    except STATE_ERRORS:
        return
    finally:
        client.close()


def domain_name(clock: Hashable) -> str:
    """The text of a clock domain in the clock key (a Kafka partition: ``topic#n``)."""
    if isinstance(clock, tuple):
        return "#".join(str(part) for part in clock)
    return str(clock)


class RedisState:
    """The Redis backend (see the module docstring): `RedisState.connect(url)`, then give
    it to an engine (`Engine.from_config(config, state=...)`).

    `client` should give up quickly (`open_client`). `require_state`: raise
    `StateUnavailableError` when the engine binds it and Redis cannot be reached; with
    False the engine starts anyway and answers degraded until Redis answers. State written
    by another version (another clock layout) raises `StateFormatError` either way.
    `buckets`: how many buckets each key set's entities are spread over, when this
    process creates the state (about the live entities of a key set / 50; None: the
    state's own count, 4096 on empty state; a count the state does not have is refused
    with `StateFormatError`). `RedisState.connect` takes it from the URL too
    (``redis://host:6379/0?buckets=65536``). `feature_options` go to every
    `RedisSceneFeatures` (guard_depth, ttl_ms, ...).
    """

    shared = True

    def __init__(self, client: Client, *, state_timeout_ms: int = DEFAULT_STATE_TIMEOUT_MS,
                 breaker: CircuitBreaker | None = None, prefix: str = "re",
                 require_state: bool = True, state_url: str = "",
                 buckets: int | None = None, **feature_options: Any) -> None:
        self.client = client
        self.state_url = redact(state_url) if state_url else repr(client)
        self.prefix = prefix
        self.budget_s = state_timeout_ms / 1000.0
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.require_state = require_state
        self.lists: Lists | None = None
        self._feature_options = feature_options
        self._clock = SharedClock(client, prefix, buckets)
        self._scenes: dict[str, RedisScene] = {}
        self.lsn = 0
        """The LSN of this process's last new decision (0: none yet)."""

    @classmethod
    def connect(cls, url: str = DEFAULT_STATE_URL, *,
                state_timeout_ms: int = DEFAULT_STATE_TIMEOUT_MS, **options: Any) -> RedisState:
        """A backend on the state at `url` (``redis://host:port/db``, ``rediss://``,
        ``unix://``, ``redis+cluster://host:port,…``, each may end in ``?buckets=N``);
        `options` as in `RedisState`."""
        try:
            buckets = state_options(url)[1]
        except RedisStateError as exc:
            raise StateUnavailableError(str(exc)) from None
        if buckets is not None:
            if options.get("buckets") not in (None, buckets):
                raise StateUnavailableError(f"buckets={options['buckets']} and the URL's "
                                            f"buckets={buckets} differ")
            options["buckets"] = buckets
        client = open_client(url, state_timeout_ms)
        return cls(client, state_timeout_ms=state_timeout_ms, state_url=url, **options)

    def bind(self, runtimes: Mapping[str, SceneRuntime], lists: Lists
             ) -> dict[str, RedisScene]:
        self.lists = lists
        prefix = self.prefix
        client = self.client
        self._scenes = {
            name: RedisScene(self, rt, RedisDecisionStore(
                cast(redis.Redis, client),  # a RedisCluster serves its GET / EVALSHA too
                name, rt.idempotency_horizon_ms, prefix=prefix),
                DecisionRecords(name, rt.feature_names, client, prefix),
                RedisScenePatterns(rt.patterns, name, prefix))
            for name, rt in runtimes.items()}
        try:
            for scene in self._scenes.values():
                scene.attach()
        except StateFormatError:
            raise
        except STATE_ERRORS as exc:
            if self.require_state:
                raise StateUnavailableError(
                    f"cannot use the state at {self.state_url}: {exc}; start Redis (7.0 or "
                    f"later) or fix the state URL") from None
            log.warning("state at %s unavailable at start (%s): deciding with each "
                        "scene's fallback until it answers", self.state_url, exc)
        return dict(self._scenes)

    def use_lists(self, lists: Lists) -> None:
        """Read lists from `lists` from now on (a `RedisListStore`)."""
        self.lists = lists
        for scene in self._scenes.values():
            if scene.features is not None:
                scene.features.lists = lists

    def drop_clock(self, clock: Hashable) -> None:
        """Nothing to drop: a partition's clock and state in Redis stay for whichever
        worker reads it next."""

    def clock(self, scene: str) -> int | None:
        """G of `scene` as it stands in Redis (one round trip, more when the state was
        made again under another bucket count: `SharedClock.read`; raises the Redis
        error when the state cannot be reached, `StateFormatError` when this process
        cannot take the state's count)."""
        return self._clock.read(scene)

    # -- the breaker ------------------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        breaker = self.breaker
        was = breaker.state
        breaker.failure()
        try:
            if self._clock.recheck(list(self._scenes), exc):
                log.warning("state at %s: the clock key was written again (the state was "
                            "emptied?); this process now writes format %s (%d buckets)",
                            self.state_url, self._clock.format, self._clock.buckets)
        except StateFormatError as refused:
            exc = refused
        except STATE_ERRORS:
            pass
        if breaker.state == OPEN and was != OPEN:
            log.log(logging.ERROR if isinstance(exc, StateFormatError) else logging.WARNING,
                    "state at %s failing (%s): circuit open, deciding with each scene's "
                    "fallback for %.0f ms", self.state_url, exc, breaker.cooldown_s * 1000)
        else:
            log.debug("state call failed: %s", exc)

    def succeeded(self) -> None:
        breaker = self.breaker
        if breaker.state == CLOSED:
            breaker.success()
            return
        breaker.success()
        if breaker.state == CLOSED:
            log.warning("state at %s answers again: circuit closed", self.state_url)

    # -- operations ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per scene: decisions made on the shared state, duplicates answered from it,
        degraded (fallback) decisions, decisions not remembered, the breaker's state and
        how often it opened. Reads no Redis."""
        breaker = self.breaker
        return {name: {"decisions": s.decisions, "duplicates": s.duplicates,
                       "degraded_decisions": s.degraded, "unremembered": s.unremembered,
                       "breaker_state": breaker.state, "breaker_opened": breaker.opened}
                for name, s in self._scenes.items()}

    def state_health(self) -> dict[str, Any]:
        """The breaker's counters, the last LSN this process was given, and the
        (redacted) state URL."""
        return {"state": self.state_url, "breaker": self.breaker.stats(),
                "last_lsn": self._clock.last_lsn}

    def close(self) -> None:
        """Close the client (nothing is pending: every step is taken in Redis)."""
        self.client.close()

    def entity(self, scene: str, field: str, value: Any) -> tuple[int | None, dict[str, Any]]:
        """As `Engine.entity`, read from Redis at the shared scene clock (two round trips:
        the clock, the entity). Raises the Redis error when the state cannot be reached."""
        shared = self._scenes[scene]
        state = shared.features if shared.features is not None else shared.attach()
        clock = state.read_clock()
        found = state.peek(field, value, clock)
        if found is None:
            raise KeyError(field)
        return clock, found

    def snapshot(self, path: str | os.PathLike[str]) -> Path:
        raise SnapshotError(f"the state is in Redis ({self.state_url}): there is nothing to "
                            f"snapshot in the process; use Redis persistence (AOF or RDB)")

    def restore(self, path: str | os.PathLike[str]) -> None:
        raise SnapshotError(f"the state is in Redis ({self.state_url}): a snapshot cannot be "
                            f"restored into it; Redis persistence (AOF or RDB) restores it")


class RedisScene:
    """One scene's shared state: its `RedisSceneFeatures` (built once Redis answers), its
    decision store, its fallback, and its counters; `evaluate` is its per-event path."""

    def __init__(self, backend: RedisState, runtime: SceneRuntime, store: RedisDecisionStore,
                 records: DecisionRecords, patterns: RedisScenePatterns) -> None:
        self.backend = backend
        self.runtime = runtime
        self.name = runtime.name
        self.store = store
        self.records = records
        self.patterns = patterns
        self.fallback = runtime.config.fallback
        self.nulls: dict[str, Any] = dict.fromkeys(runtime.feature_names)
        self.features: RedisSceneFeatures | None = None
        self.decisions = 0
        self.duplicates = 0
        self.degraded = 0
        self.unremembered = 0

    def attach(self) -> RedisSceneFeatures:
        backend = self.backend
        self.records.register()
        features = RedisSceneFeatures(backend.client, self.runtime.config, lists=backend.lists,
                                      prefix=backend.prefix, clock=backend._clock,
                                      **backend._feature_options)
        self.features = features
        return features

    def evaluate_many(self, events: list[dict[str, Any]], clock: Hashable) -> list[Decision]:
        """`evaluate` for each event in order, on the clock of domain `clock`.

        On one server a run of events goes in two round trips: every event's ``event``
        call, pipelined on one connection (Redis runs them in that order, so their LSNs
        are in it), then every remembering. A run ends before an id seen earlier in it,
        so that the repeat finds the first one's record, and after `RUN_MAX` events. A
        failing round trip answers every event of its run as it would answer one event
        (degraded, or decided and not remembered). A cluster decides event by event."""
        state = self.features
        if state is None or not state.one_server or len(events) < 2:
            return [self.evaluate(event, perf_counter(), clock) for event in events]
        domain = None if clock is None else domain_name(clock)
        decisions: list[Decision] = []
        start = 0
        while start < len(events):
            seen: set[str] = set()
            end = start
            while (end < len(events) and end - start < RUN_MAX
                   and events[end]["event_id"] not in seen):
                seen.add(events[end]["event_id"])
                end += 1
            run, started = events[start:end], perf_counter()
            if self.backend.breaker.allow():
                decisions += self._run(state, run, started, domain)
            else:
                decisions += [self._degraded(event, started) for event in run]
            start = end
        return decisions

    def evaluate(self, event: dict[str, Any], started: float, clock: Hashable) -> Decision:
        """Decide one parsed event on the shared state; never a Redis error (those give the
        degraded fallback decision). `clock`: the event's clock domain (a partition of a
        stream worker: its own scene clock in Redis; None: the scene's one clock)."""
        domain = None if clock is None else domain_name(clock)
        backend = self.backend
        if not backend.breaker.allow():
            return self._degraded(event, started)
        try:
            state = self.features
            if state is None:
                state = self.attach()
            if state.one_server:
                return self._run(state, [event], started, domain)[0]
            computed = self._in_two_calls(state, event, domain, started)
        except STATE_ERRORS as exc:
            backend.failed(exc)
            return self._degraded(event, started)
        return self._decide([event], [computed], started)[0]

    def _run(self, state: RedisSceneFeatures, events: list[dict[str, Any]], started: float,
             domain: str | None) -> list[Decision]:
        """One server: each event's idempotency lookup, clock step, entities and patterns
        in one atomic call (the ``event`` function), every event's call in one round trip;
        then `_decide`. The caller asked the breaker."""
        backend = self.backend
        lists = backend.lists
        calls, parts = [], []
        for event in events:
            asked: list[str] = []
            patterns: list[tuple[str, list[Any]]] = []
            if self.patterns:
                patterns, asked = self.patterns.parts(event, lists)
            event_id = event["event_id"]
            call, touched, _ = state.event_call(event, domain, self.store.key(event_id),
                                                event_digest(event_id), patterns)
            calls.append(call)
            parts.append((touched, asked))
        try:
            replies = state.run_calls(calls)
        except STATE_ERRORS as exc:
            backend.failed(exc)
            return [self._degraded(event, started) for event in events]
        taken = backend._clock.taken
        computed: list[_Computed] = []
        for event, (touched, asked), reply in zip(events, parts, replies, strict=True):
            if reply[0] == 0:  # remembered: a duplicate, nothing changed, not even G
                computed.append((bytes(reply[1]), NO_STEP, {}, False))
                continue
            step = taken(reply[1:5], event["timestamp"])
            features, late = state.values(touched, reply[5], step.late)
            if self.patterns:
                self.patterns.read(asked, reply[6], features)
            computed.append((None, step, features, late))
        return self._decide(events, computed, started)

    def _decide(self, events: list[dict[str, Any]], computed: list[_Computed],
                started: float) -> list[Decision]:
        """Decide the events whose state calls are done, in order (a run's models score
        its new events in one run each), and remember the new decisions (one round trip
        on one server, one per event on a cluster). A duplicate answers with the
        decision remembered first, also when another worker remembered its id in
        between."""
        backend = self.backend
        lists = backend.lists
        assert lists is not None
        runtime = self.runtime
        lineup = runtime.lineup  # one lineup scores and decides the whole run
        if lineup.models is not None:
            new = [(event, c[2]) for event, c in zip(events, computed, strict=True)
                   if c[0] is None]
            lineup.models.score_many([n[0] for n in new], [n[1] for n in new])
        decisions: list[Decision] = []
        fresh: list[tuple[int, Step]] = []
        records: list[tuple[str, int, str | bytes, int | None]] = []
        for event, (previous, step, features, late) in zip(events, computed, strict=True):
            event_id = event["event_id"]
            if previous is not None:
                self.duplicates += 1
                decisions.append(self.records.decode(previous, event_id))
                continue
            decision, _ = runtime.decide(event, step.lsn, features, late, False, lists,
                                         started, lineup)
            fresh.append((len(decisions), step))
            records.append((event_id, event["timestamp"], self.records.encode(decision),
                            step.clock))
            decisions.append(decision)
        firsts: list[bytes | None]
        try:
            firsts = self.store.remember_many(records) if records else []
        except STATE_ERRORS as exc:
            backend.failed(exc)
            self.unremembered += len(records)
            firsts = [None] * len(records)
        else:
            backend.succeeded()
        for (i, step), first in zip(fresh, firsts, strict=True):
            if first is not None:  # another worker decided this id first: its answer stands
                self.duplicates += 1
                decisions[i] = self.records.decode(first, decisions[i].event_id)
                continue
            self.decisions += 1
            backend.lsn = step.lsn
            decisions[i].latency_ms = (perf_counter() - started) * 1000.0
        return decisions

    def _in_two_calls(self, state: RedisSceneFeatures, event: dict[str, Any],
                      domain: str | None, started: float) -> _Computed:
        """A cluster: the clock step with the idempotency lookup (two nodes, in
        parallel), then the entities and patterns (one pipeline per node). As `_run` for
        one event; a duplicate whose step raised G puts it back."""
        event_id = event["event_id"]
        backend = self.backend
        run = state.run_calls
        raw, reply = run([state.recall_call(self.store.key(event_id)),
                          state.step_call(event, domain)])
        step = backend._clock.taken(reply, event["timestamp"])
        previous = self.store.live(raw, step.clock)
        if previous is not None:
            if step.raised:
                self._unclock(state, event, step, domain)
            return previous, step, {}, False
        if perf_counter() - started > backend.budget_s:
            raise redis.exceptions.TimeoutError("the state time budget ran out before the "
                                                "features were computed")
        digest = event_digest(event_id)  # once, for the entities and patterns
        calls, touched = state.entity_calls(event, step, digest)
        asked: list[str] = []
        if self.patterns:
            more, asked = self.patterns.calls(state, event, step, backend.lists, digest)
            calls += more
        replies = run(calls)
        features, late = state.values(touched, replies[:len(touched)], step.late)
        if self.patterns:
            self.patterns.read(asked, replies[len(touched):], features)
        return None, step, features, late

    def _unclock(self, state: RedisSceneFeatures, event: dict[str, Any], step: Step,
                 domain: str | None) -> None:
        """Put G back after the clock step of a duplicate raised it (best effort: the
        duplicate is answered either way)."""
        try:
            state.run_calls([state.undo_call(event, step, domain)])
        except STATE_ERRORS as exc:
            log.warning("state at %s: the clock of scene %s stays at %s after a duplicate "
                        "(%s)", self.backend.state_url, state.scene, event["timestamp"], exc)

    def _degraded(self, event: dict[str, Any], started: float) -> Decision:
        self.degraded += 1
        return Decision(event["event_id"], self.name, self.fallback, 0.0, (), (),
                        dict(self.nulls), (), self.runtime.ruleset.version, False, True,
                        (perf_counter() - started) * 1000.0, 0, event["timestamp"])
