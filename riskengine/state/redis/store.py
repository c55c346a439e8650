"""`RedisSceneFeatures`: a scene's features computed and stored in Redis.

An event takes its clock step (its LSN, the scene clock G before it, and whether it is
late; riskengine/state/redis/clock.py), then each entity it touches is updated by its
plan's function, given t, G and the late flag: no entity decides lateness, so an event
is late on all its keys or on none. On one server that is one atomic call
(`event_call`); on a cluster two round trips: the step (`step_call`), then the entities
in one pipeline (`entity_calls`). `compute(event)` gives what `SceneFeatures.compute`
gives in memory, `(features, late)`, for the same events in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from riskengine.config import SceneConfig
from riskengine.features.aggregators import FINISH
from riskengine.lists import Lists
from riskengine.rules.expr import ExprNames, compile_expression
from riskengine.state.redis.clock import SharedClock, Step
from riskengine.state.redis.codec import (
    RedisStateError,
    decode_value,
    event_digest,
    key_text,
    slot_text,
)
from riskengine.state.redis.functions import Call, Client, FunctionCaller, Library
from riskengine.state.redis.plan import EntityPlan, build_entity_plans

SCRIPTS = Path(__file__).parent / "scripts"
MIN_TTL_MS = 600_000
"""Idempotency records are kept at least this long (wall clock), whatever the windows."""
STATE_TTL_FLOOR_MS = 86_400_000
"""Entity and pattern keys' TTLs are never shorter than a day (wall clock): a safety net
for keys nothing touches any more, far beyond the event-time horizon that forgets them
(docs/semantics.md, Memory). A stream whose event time stops for longer than that (minus
its horizon) should set a longer `ttl_ms`, or 0."""
RUNNING_FROM = 32
"""Entities holding at least this many entries keep running totals (see the package
docstring); below half of it they go back to scanning."""
PAGE_ENTRIES = 16
"""A call reads a paged entity's entries this many at a time; a paged entity goes back
to its bucket once it holds at most this many (and fits)."""
_EMPTY: dict[str, Any] = {}

Predicate = Callable[..., Any]
Decoder = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script for EVALSHA and its SHA1 (`RedisDecisionStore`)."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


def load_script(name: str) -> str:
    return (SCRIPTS / name).read_text(encoding="utf-8")


# The functions answer the exact moments (nil for an empty window); the results come
# from the aggregates' one definition (`FINISH`), as in memory.

def _sum(raw: bytes) -> Any:
    return FINISH["sum"](1, int(raw))  # only the sum is sent: the window is not empty


def _avg(raw: bytes) -> Any:
    k, s = raw.split(b" ")
    return FINISH["avg"](int(k), int(s))


def _stddev(raw: bytes) -> Any:
    k_text, s_text, a, b, c, d = raw.split(b" ")
    s2 = (int(a) << 52) + (int(b) << 27) + int(c) + int(d)  # see scripts/entity.lua
    return FINISH["stddev"](int(k_text), int(s_text), s2)


DECODERS: dict[str, Decoder] = {
    "count": int, "count_distinct": int, "sum": _sum, "avg": _avg, "stddev": _stddev,
    "min": decode_value, "max": decode_value, "first": decode_value, "last": decode_value,
}


@dataclass(frozen=True, slots=True)
class _Entity:
    """An `EntityPlan` prepared for the per-event path."""

    plan: EntityPlan
    index: int  # its plan's place in the library's PLANS (from 1)
    function: str  # its function's name in the library
    single: str | None  # the key field when B has one field
    key_head: str
    key_tail: str
    filters: tuple[tuple[int, Predicate | None], ...]  # (group bit, where predicate)
    slots: tuple[tuple[str, bool, bool], ...]  # (field, quantized, distinct)
    outputs: tuple[tuple[str, Decoder], ...]
    ttl_ms: int


class RedisSceneFeatures:
    """The features of one scene with their state in Redis (see the package docstring).

    `client` is a `redis.Redis` or a `redis.cluster.RedisCluster` with bytes replies (no
    `decode_responses`; `connect(url)` makes either). `clock`: the `SharedClock` of the
    prefix (one per process is enough; made here when not given); state of another
    layout is refused with `StateFormatError`. `guard_depth` is how many recent
    events each entity remembers for its idempotency guard (0: none). `ttl_ms` overrides
    the least TTL of entity keys after a write, `max(2 * (L + Rmax(B)), 1 day)` (0: no
    TTL; a write finding less left sets twice that). `buckets` per
    key set: about the number of live entities / 50, fixed when the state is created
    (None: the state's count, `DEFAULT_BUCKETS` on empty state; given with no `clock`
    only: the clock holds it, see `SharedClock`). `bucket_value_max`: the largest
    entity kept as a bucket field; by default the server's `hash-max-listpack-value` (so
    buckets stay listpack-encoded). `running_from`: entities with at least this many
    entries keep running totals instead of scanning their entries on every event.
    `page_entries`: a call reads a paged entity's entries (in its sorted set) this many
    at a time, and a paged entity goes back to its bucket once it holds at most this
    many entries and fits in three quarters of a field.
    """

    def __init__(self, client: Client, scene: SceneConfig, *,
                 lists: Lists | None = None, prefix: str = "re",
                 clock: SharedClock | None = None, guard_depth: int = 1,
                 ttl_ms: int | None = None, buckets: int | None = None,
                 bucket_value_max: int | None = None, sweep: int = 2,
                 running_from: int = RUNNING_FROM, page_entries: int = PAGE_ENTRIES) -> None:
        if guard_depth < 0 or sweep < 0 or running_from < 0 or page_entries < 1:
            raise RedisStateError("guard_depth, sweep and running_from must be 0 or more, "
                                  "page_entries 1 or more")
        if clock is not None and buckets is not None:
            raise RedisStateError("give buckets to the SharedClock (it holds the state's "
                                  "count), not with a clock")
        self.client = client
        self.scene = scene.name
        self.lists = lists
        self.lateness_ms = scene.lateness_ms
        self.names = tuple(spec.name for spec in scene.features)
        self.max_window_ms = max((s.window_ms for s in scene.features), default=0)
        self.idempotency_horizon_ms = scene.lateness_ms + self.max_window_ms
        self.shared_clock = (clock if clock is not None
                             else SharedClock(client, prefix, buckets))
        self.shared_clock.check([scene.name])
        self.plans = build_entity_plans(scene.features, scene.lateness_ms)
        tables = [plan.lua(guard_depth, self.max_window_ms, sweep, running_from, page_entries)
                  for plan in self.plans]
        body = load_script("entity.lua") + "\nlocal PLANS = {\n" + "".join(
            f"  {table},\n" for table in tables) + "}\n"
        self.library, functions = Library.build("riskengine", body, [
            *((f"e{i}", f"lazy(function(lib) return lib.entity_at(PLANS, {i + 1}) end)")
              for i in range(len(tables))),
            ("event", "lazy(function(lib) return lib.event(PLANS) end)"),
            *((name, f"lazy(function(lib) return lib.{name} end)")
              for name in ("clock", "unclock", "recall", "inspect", "pattern"))])
        self.pattern_function = functions["pattern"]
        self._event_function = functions["event"]
        self._clock_function = functions["clock"]
        self._unclock_function = functions["unclock"]
        self._recall_function = functions["recall"]
        self._inspect_function = functions["inspect"]
        where_names = ExprNames(
            features=frozenset(), lists=frozenset(lists.names()) if lists else frozenset(),
            patterns=frozenset(), models=frozenset(), allow_features=False)
        entities = []
        for i, plan in enumerate(self.plans):
            filters = []
            for group in plan.groups:
                predicate = None if group.where is None else compile_expression(
                    group.where, names=where_names,
                    origin=f"scene {scene.name!r} features by {'+'.join(plan.by)} where")
                filters.append((group.bit, predicate))
            ttl = ttl_ms if ttl_ms is not None else max(
                2 * (scene.lateness_ms + plan.reach_ms), STATE_TTL_FLOOR_MS)
            entities.append(_Entity(
                plan=plan,
                index=i + 1,
                function=functions[f"e{i}"],
                single=plan.by[0] if len(plan.by) == 1 else None,
                key_head=f"{prefix}:{{{scene.name}|{'+'.join(plan.by)}|",
                key_tail=f"}}:{plan.signature}",
                filters=tuple(filters),
                slots=tuple((s.field, s.quantized, s.distinct) for s in plan.slots),
                outputs=tuple((o.name, DECODERS[o.func]) for o in plan.outputs),
                ttl_ms=ttl,
            ))
        self._entities = tuple(entities)
        self.bucket_value_max = (self._listpack_value_max() if bucket_value_max is None
                                 else bucket_value_max)
        self.key_pattern = f"{prefix}:{{{scene.name}|*"
        self._caller = FunctionCaller(client, self.library, f"scene {scene.name!r}",
                                      resend=guard_depth > 0)
        self._run = self._caller.run

    # ------------------------------------------------------------------ functions

    @property
    def buckets(self) -> int:
        """Buckets per key set: the state's count (`SharedClock.check`), read per call so
        that every scene of a process follows the clock when it checks again."""
        return self.shared_clock.buckets

    def load_library(self) -> None:
        """FUNCTION LOAD the scene's library (done at start, and again on any node that
        answers "Function not found")."""
        self._caller.load()

    def _listpack_value_max(self) -> int:
        try:
            found = self.client.config_get("hash-max-listpack-value")
        except redis.exceptions.ResponseError:  # CONFIG may be disabled (managed Redis)
            return 64
        for name, value in dict(found).items():
            if name in ("hash-max-listpack-value", b"hash-max-listpack-value") and value:
                return min(int(value), 1024)
        return 64

    # ------------------------------------------------------------------ clock

    def step_call(self, event: dict[str, Any], domain: str | None = None) -> Call:
        """The FCALL of the event's clock step on the clock of `domain` (a partition;
        None: the scene's one clock) (reply: `shared_clock.taken`)."""
        return self.shared_clock.step_call(self._clock_function, self.scene,
                                           event["timestamp"], self.lateness_ms, domain)

    def undo_call(self, event: dict[str, Any], step: Step, domain: str | None = None
                  ) -> Call:
        """The FCALL that puts G back after the step of a duplicate raised it."""
        return self.shared_clock.undo_call(self._unclock_function, self.scene,
                                           event["timestamp"], step, domain)

    def recall_call(self, key: str) -> Call:
        """The FCALL that reads the idempotency record at `key` (a GET, in the pipeline
        of the clock step)."""
        return (self._recall_function, (key,), ())

    def read_clock(self) -> int | None:
        """G of this scene as it stands in Redis (one round trip)."""
        return self.shared_clock.read(self.scene)

    # ------------------------------------------------------------------ per event

    def _text_of(self, entity: _Entity, event: dict[str, Any]) -> str | None:
        """The entity's key value as text (its bucket field), None for a null key."""
        if entity.single is not None:
            value = event.get(entity.single)
            if value is None:
                return None
            return key_text((value,))
        values = tuple(event.get(f) for f in entity.plan.by)
        if None in values:
            return None
        return key_text(values)

    def entity_keys(self, entity: _Entity, text: str) -> tuple[str, str, str]:
        """(bucket hash, own hash, sorted set of entries) of the entity whose key value
        is `text` (a key text never starts with ``e``: the last two cannot meet)."""
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        bucket = entity.key_head + str(int.from_bytes(digest, "big") % self.buckets) + \
            entity.key_tail
        return bucket, f"{bucket}:{text}", f"{bucket}:e:{text}"

    @property
    def one_server(self) -> bool:
        """The state is on one server (not a cluster): an event's keys can all be
        touched by one atomic call (`event_call`)."""
        return self._caller.one_server

    def compute(self, event: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Feature values for a parsed `event` and whether it is late; stores it unless
        late (no idempotency check: `RedisState` is the whole decision path). One round
        trip on one server (`event_call`); on a cluster two: the clock step, then the
        entities."""
        digest = event_digest(event["event_id"])
        try:
            if self.one_server:
                call, touched, _ = self.event_call(event, None, None, digest, [])
                (reply,) = self._run([call])
                step = self.shared_clock.taken(reply[1:5], event["timestamp"])
                return self.values(touched, reply[5], step.late)
            (reply,) = self._run([self.step_call(event)])
            step = self.shared_clock.taken(reply, event["timestamp"])
            calls, touched = self.entity_calls(event, step, digest)
            return self.values(touched, self._run(calls), step.late)
        except RedisStateError as exc:  # the state made again: checked for the next call
            self.shared_clock.recheck([self.scene], exc)
            raise

    def entity_parts(self, event: dict[str, Any]
                     ) -> list[tuple[_Entity, tuple[str, str, str], list[Any]]]:
        """Every entity the event touches (null keys touch none): the entity, its keys
        (`entity_keys`) and what its call says whatever the clock step gives: its group
        mask, TTL, key value text, the bucket field limit and its slot texts."""
        lists = self.lists
        small = self.bucket_value_max
        parts = []
        for entity in self._entities:
            text = self._text_of(entity, event)
            if text is None:
                continue
            mask = 0
            for bit, predicate in entity.filters:
                if predicate is None or predicate(event, _EMPTY, lists):
                    mask |= bit
            fixed: list[Any] = [mask, entity.ttl_ms, text, small]
            for field, quantized, distinct in entity.slots:
                value = event.get(field)
                fixed.append("" if value is None else slot_text(
                    value, quantized=quantized, distinct=distinct, field=field))
            parts.append((entity, self.entity_keys(entity, text), fixed))
        return parts

    def entity_calls(self, event: dict[str, Any], step: Step, digest: bytes
                     ) -> tuple[list[Call], list[_Entity]]:
        """The FCALLs of every entity the event touches, given its clock step and the
        digest of its id (`codec.event_digest`), and those entities (for `values`)."""
        t = event["timestamp"]
        clock = step.clock
        clock_arg: int | str = "" if clock is None else clock
        forget = step.forget
        forget_arg: int | str = "" if forget is None else forget
        horizon: int | str = "" if clock is None else clock - self.idempotency_horizon_ms
        late = 1 if step.late else 0
        commands: list[Call] = []
        touched: list[_Entity] = []
        for entity, keys, (mask, ttl, text, small, *slots) in self.entity_parts(event):
            commands.append((entity.function, keys,
                             ["a", t, clock_arg, late, horizon, digest, mask, ttl, text,
                              small, forget_arg, *slots]))
            touched.append(entity)
        return commands, touched

    def event_call(self, event: dict[str, Any], domain: str | None, record_key: str | None,
                   digest: bytes, patterns: list[tuple[str, list[Any]]]
                   ) -> tuple[Call, list[_Entity], int]:
        """The one FCALL of an event on one server (the ``event`` function of
        scripts/entity.lua): the idempotency lookup at `record_key` (None: none; the
        clock key takes its place), the
        clock step on the clock of `domain`, every entity the event touches and its
        `patterns` (key, arguments: `RedisScenePatterns.parts`), atomically. Returns it,
        the entities (for `values`) and how many patterns it holds."""
        t = event["timestamp"]
        clock = self.shared_clock
        keys = [clock.key, clock.key if record_key is None else record_key]
        args: list[Any] = [*clock.step_args(self.scene, t, self.lateness_ms, domain),
                           self.idempotency_horizon_ms, digest, 0, len(patterns)]
        touched: list[_Entity] = []
        for entity, entity_keys, fixed in self.entity_parts(event):
            keys += entity_keys
            args.append(entity.index)
            args += fixed
            touched.append(entity)
        args[8] = len(touched)
        for key, pattern_args in patterns:
            keys.append(key)
            args += pattern_args
        return (self._event_function, keys, args), touched, len(patterns)

    def values(self, touched: list[_Entity], replies: list[Any], late: bool
               ) -> tuple[dict[str, Any], bool]:
        """The features from the replies of `entity_calls`, and whether the event is late:
        `late` as its clock step said, unless an entity answered from its guard record (a
        retried event gets its first answer, late flag included)."""
        out = dict.fromkeys(self.names)
        for entity, reply in zip(touched, replies, strict=True):
            if reply[1] == 1:
                late = reply[0] == 1
            for (name, decode), raw in zip(entity.outputs, reply[2:], strict=True):
                out[name] = None if raw is None else decode(raw)
        return out, late

    def peek(self, field: str, value: Any, clock: int | None) -> dict[str, Any] | None:
        """The features keyed by exactly `field` for key `value`, read at the scene clock
        as an event there that no filter lets in would read them (nothing is counted or
        stored; one round trip, two when a string of digits finds no key and is tried as
        an integer). None when no feature is keyed by `field` alone."""
        for entity in self._entities:
            if entity.plan.by != (field,):
                continue
            at: int | str = 0 if clock is None else clock
            blank = [""] * len(entity.slots)
            candidates = [value]
            digits = value.removeprefix("-") if isinstance(value, str) else ""
            if digits.isascii() and digits.isdigit() and len(digits) < 19:
                candidates.append(int(value))  # the path gives strings
            reply: Any = None
            for candidate in candidates:
                text = key_text((candidate,))
                (reply,) = self._run([(entity.function, self.entity_keys(entity, text),
                                       ["p", at, "" if clock is None else clock, 0, "", "",
                                        0, 0, text, self.bucket_value_max,
                                        "" if clock is None else clock, *blank])])
                if reply[0] == 1:
                    break
            return {name: None if raw is None else decode(raw)
                    for (name, decode), raw in zip(entity.outputs, reply[2:], strict=True)}
        return None

    def run_calls(self, calls: list[Call]) -> list[Any]:
        """Send FCALLs of this scene's library in one pipeline (see `FunctionCaller`)."""
        return self._run(calls)

    # ------------------------------------------------------------------ inspection

    def state_keys(self) -> Iterator[bytes]:
        """Every entity key of this scene (SCAN of every primary: for tests and operators,
        not per event)."""
        yield from self.client.scan_iter(match=self.key_pattern, count=1000)

    def stats(self) -> dict[str, int]:
        """Entities, retained entries, tiles, guard records and running states, and the
        MEMORY USAGE of their keys."""
        strides = {e.plan.signature.encode(): (e.plan.stride, 3 + len(e.plan.outputs))
                   for e in self._entities}
        names = ("entities", "retained_entries", "tiles", "guard_records", "running_states",
                 "memory_bytes")
        totals = dict.fromkeys(("keys", *names), 0)
        for key in self.state_keys():
            # <bucket>, <bucket>:<text> or <bucket>:e:<text>; <bucket> ends in }:<sig>
            head, _, rest = key.partition(b"}:")
            signature, _, text = rest.partition(b":")
            if signature not in strides or text.startswith(b"e:"):
                continue  # another plan's, or the entries of an own hash (counted with it)
            bucket = head + b"}:" + signature
            keys = (key.decode(),) if not text else (key.decode(), f"{bucket.decode()}:e:"
                                                                   f"{text.decode()}")
            kind = "0" if text else "1"
            (sizes,) = self._run([(self._inspect_function, keys,
                                   (*strides[signature], kind))])
            totals["keys"] += 1
            for name, size in zip(names, sizes, strict=True):
                totals[name] += int(size)
        return totals
