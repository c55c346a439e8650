"""Where the guarded rollout keeps its counts, watches and verdicts: in the process
(`MemoryGuardStore`) or in Redis, shared by every worker (`RedisGuardStore`).

Counts arrive in *flushes*: each process adds the decisions it counted since its last
flush, per (scene, kind, version), as one `Tally` (riskengine/service/guard.py). A store
keeps, per version, the running totals and the newest per-flush tallies (at most
`depth` of them: each holds one decision or more, so they always cover the last `depth`
decisions). A watch reads its version's totals minus the totals when it started (its
*offset*); the previous version's last N decisions are the newest tallies whose sum
first reaches N.

A `Flush` is named by its process (`source`, a random id per process) and its sequence
number there. A flush whose `add` raised may have been applied anyway (in Redis: a call
that timed out after the server ran it), so the process sends the same flush again
(same source, sequence and counts) before any newer one. The Redis store applies a
flush to a version at most once: one function call per version adds the counts, pushes
the tally and records the sequence in the version's hash, atomically, and skips a
sequence of that source it has recorded already. The memory store applies an `add`
whole before it returns, so it never sees a flush again.

Changes of a watch are compare-and-set: `replace` succeeds only when the scene's watch is
still the one the caller read, `conclude` only when the watch is still in the state the
caller expects, so when several workers reach the same verdict exactly one acts on it.
`conclude` names the worker that moved the watch (its *owner*) and answers True again
when that worker asks for the same move once more, so a worker whose answer was lost
(a timeout after Redis ran the script) learns that the move, and the rollback, are its
own.

Redis key layout (``<prefix>`` is the state's, ``re`` by default; ``{<scene>}`` is the
Redis Cluster hash tag, so every script and function call below touches one slot)::

    <prefix>:guard:{<scene>}:<kind>:watch            hash: id, version, previous,
        started_at_ms, state, offset ("n,accept,review,reject"), verdict (JSON or ""),
        owner (the source of the worker that concluded it, "" while watching)
    <prefix>:guard:{<scene>}:<kind>:verdicts         list: verdict JSON, newest first
    <prefix>:guard:{<scene>}:<kind>:v:<version>      hash: n, accept, review, reject,
        and seq:<source> (the last flush of that process applied), one per process that
        counted the version
    <prefix>:guard:{<scene>}:<kind>:v:<version>:recent   list: "n,accept,review,reject"
        per flush, newest first, trimmed to `depth`

A version's counts expire `COUNTS_TTL_MS` after its last decision.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from riskengine.files import read_json, write_json_atomic
from riskengine.state.redis.functions import Call, FunctionCaller, Library

VERDICTS_KEPT = 50
"""Concluded watches kept per scene and kind (the guard endpoint's history)."""
COUNTS_TTL_MS = 30 * 86_400_000
MEMORY_VERSIONS_KEPT = 256
"""Versions whose counts a `MemoryGuardStore` keeps (the least recently counted go)."""


class Tally(NamedTuple):
    """Decisions counted, and how many of them were accept, review and reject."""

    n: int = 0
    accept: int = 0
    review: int = 0
    reject: int = 0

    def plus(self, other: Tally) -> Tally:
        return Tally(*(a + b for a, b in zip(self, other, strict=True)))

    def minus(self, other: Tally) -> Tally:
        return Tally(*(a - b for a, b in zip(self, other, strict=True)))

    def rate(self, outcome: str) -> float:
        """The share of `outcome` (review or reject) among the decisions; 0 without any."""
        return getattr(self, outcome) / self.n if self.n else 0.0

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Tally:
        if not raw:
            return cls()
        return cls(*(int(part) for part in _text(raw).split(",")))


NO_DECISIONS = Tally()

VersionKey = tuple[str, str, str]
"""(scene, kind, version)."""


@dataclass(frozen=True, slots=True)
class Flush:
    """The counts one process (`source`) counted since its previous flush, the `seq`-th
    of that process (sequence numbers grow with each new flush)."""

    source: str
    seq: int
    deltas: Mapping[VersionKey, Tally]


@dataclass(frozen=True, slots=True)
class Watch:
    """The one watch of a (scene, kind): `version` went live after `previous`."""

    scene: str
    kind: str
    id: str
    version: str
    previous: str
    started_at_ms: int
    state: str = "watching"  # watching, rolling_back, or a verdict's state
    offset: Tally = NO_DECISIONS
    verdict: Mapping[str, Any] | None = None
    owner: str = ""
    """The worker that moved it to its state (`GuardStore.conclude`); "" while watching."""


class GuardStore(Protocol):
    def add(self, flush: Flush) -> None:
        """Add one flush of counts; one this store applied already is not added again."""
        ...

    def totals(self, scene: str, kind: str, version: str) -> Tally: ...

    def recent(self, scene: str, kind: str, version: str, decisions: int) -> Tally:
        """The sum of the newest flushes of `version` that first reaches `decisions`
        (all of them when they hold fewer)."""
        ...

    def watches(self, pairs: Iterable[tuple[str, str]]) -> list[Watch]:
        """The current watch of each (scene, kind) that has one."""
        ...

    def replace(self, current: Watch | None, new: Watch,
                retired: Mapping[str, Any] | None) -> bool:
        """Make `new` the watch of its (scene, kind), its offset the version's totals now,
        if the watch there is still `current` (None: none); record `retired` (the verdict
        of a watch cut short) first. False when another change came first."""
        ...

    def conclude(self, watch: Watch, expect: str, state: str, verdict: Mapping[str, Any],
                 record: bool, owner: str) -> bool:
        """Move `watch` from state `expect` to `state` with `verdict`, done by `owner`, and
        when `record`, add the verdict to the history; True also when `owner` made this
        move already (nothing is changed again); False when the watch is gone or in
        another state."""
        ...

    def verdicts(self, scene: str, kind: str) -> list[dict[str, Any]]:
        """Concluded watches, newest first."""
        ...


def sum_newest(tallies: Iterable[Tally], decisions: int) -> Tally:
    total = Tally()
    for tally in tallies:
        if total.n >= decisions:
            break
        total = total.plus(tally)
    return total


class MemoryGuardStore:
    """One process's store; the verdicts are also written to `path` (when given), so the
    versions list still marks what the guard rolled back after a restart."""

    def __init__(self, depth: int, path: Path | None = None) -> None:
        self.depth = depth
        self.path = path
        self._lock = threading.Lock()
        self._totals: dict[VersionKey, Tally] = {}
        self._recent: dict[VersionKey, deque[Tally]] = {}
        self._watches: dict[tuple[str, str], Watch] = {}
        self._verdicts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._load()

    def add(self, flush: Flush) -> None:
        with self._lock:
            for key, delta in flush.deltas.items():
                self._totals[key] = self._totals.pop(key, Tally()).plus(delta)
                recent = self._recent.pop(key, None) or deque(maxlen=self.depth)
                recent.appendleft(delta)
                self._recent[key] = recent  # re-inserted: the dicts are in counting order
            watched = {(w.scene, w.kind, w.version) for w in self._watches.values()}
            watched |= {(w.scene, w.kind, w.previous) for w in self._watches.values()}
            for key in [k for k in self._totals if k not in watched][
                    :max(0, len(self._totals) - MEMORY_VERSIONS_KEPT)]:
                del self._totals[key]
                self._recent.pop(key, None)

    def totals(self, scene: str, kind: str, version: str) -> Tally:
        with self._lock:
            return self._totals.get((scene, kind, version), Tally())

    def recent(self, scene: str, kind: str, version: str, decisions: int) -> Tally:
        with self._lock:
            return sum_newest(self._recent.get((scene, kind, version), ()), decisions)

    def watches(self, pairs: Iterable[tuple[str, str]]) -> list[Watch]:
        with self._lock:
            return [self._watches[pair] for pair in pairs if pair in self._watches]

    def replace(self, current: Watch | None, new: Watch,
                retired: Mapping[str, Any] | None) -> bool:
        pair = (new.scene, new.kind)
        with self._lock:
            existing = self._watches.get(pair)
            if (existing and existing.id) != (current and current.id):
                return False
            if retired is not None:
                self._record(pair, retired)
            offset = self._totals.get((new.scene, new.kind, new.version), Tally())
            self._watches[pair] = replace(new, offset=offset)
        return True

    def conclude(self, watch: Watch, expect: str, state: str, verdict: Mapping[str, Any],
                 record: bool, owner: str) -> bool:
        pair = (watch.scene, watch.kind)
        with self._lock:
            current = self._watches.get(pair)
            if current is None or current.id != watch.id:
                return False
            if (current.state, current.owner) == (state, owner):
                return True
            if current.state != expect:
                return False
            self._watches[pair] = replace(current, state=state, verdict=dict(verdict),
                                          owner=owner)
            if record:
                self._record(pair, verdict)
        return True

    def verdicts(self, scene: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for v in self._verdicts.get((scene, kind), ())]

    def _record(self, pair: tuple[str, str], verdict: Mapping[str, Any]) -> None:
        kept = self._verdicts.setdefault(pair, [])
        kept.insert(0, dict(verdict))
        del kept[VERDICTS_KEPT:]
        if self.path is not None:
            write_json_atomic(self.path, [{"scene": scene, "kind": kind, "verdicts": found}
                                          for (scene, kind), found in self._verdicts.items()])

    def _load(self) -> None:
        if self.path is None:
            return
        data = read_json(self.path)
        for item in data if isinstance(data, list) else ():
            if (isinstance(item, dict) and isinstance(item.get("scene"), str)
                    and isinstance(item.get("kind"), str)
                    and isinstance(item.get("verdicts"), list)):
                self._verdicts[item["scene"], item["kind"]] = [
                    v for v in item["verdicts"] if isinstance(v, dict)][:VERDICTS_KEPT]


_ADD = """
local function add(keys, args)
  local seq = tonumber(args[2])
  if seq <= tonumber(redis.call('HGET', keys[1], args[1]) or '0') then return 0 end
  redis.call('HSET', keys[1], args[1], args[2])
  local fields = {'n', 'accept', 'review', 'reject'}
  for i = 1, 4 do
    if args[i + 2] ~= '0' then redis.call('HINCRBY', keys[1], fields[i], args[i + 2]) end
  end
  redis.call('LPUSH', keys[2], table.concat(args, ',', 3, 6))
  redis.call('LTRIM', keys[2], 0, tonumber(args[7]) - 1)
  redis.call('PEXPIRE', keys[1], args[8])
  redis.call('PEXPIRE', keys[2], args[8])
  return 1
end
"""
"""One flush of one version: KEYS totals hash, recent list; ARGV ``seq:<source>``, seq,
n, accept, review, reject, depth, TTL (ms). 0 when the flush was applied already."""
_LIBRARY, _FUNCTIONS = Library.build("riskengine_guard", _ADD, [("add", "add")])

_REPLACE = """
local current = redis.call('HGET', KEYS[1], 'id') or ''
if current ~= ARGV[1] then return 0 end
if ARGV[7] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[7])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[8]) - 1)
end
local t = redis.call('HMGET', KEYS[3], 'n', 'accept', 'review', 'reject')
local offset = (t[1] or '0') .. ',' .. (t[2] or '0') .. ',' .. (t[3] or '0') .. ','
  .. (t[4] or '0')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'version', ARGV[3], 'previous', ARGV[4],
  'started_at_ms', ARGV[5], 'state', ARGV[6], 'offset', offset, 'verdict', '',
  'owner', '')
return 1
"""

_CONCLUDE = """
local watch = redis.call('HMGET', KEYS[1], 'id', 'state', 'owner')
if watch[1] ~= ARGV[1] then return 0 end
if watch[2] == ARGV[3] and watch[3] == ARGV[7] then return 1 end
if watch[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'verdict', ARGV[4], 'owner', ARGV[7])
if ARGV[5] == '1' then
  redis.call('LPUSH', KEYS[2], ARGV[4])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
end
return 1
"""


class RedisGuardStore:
    """The store in Redis (key layout in the module docstring), shared by every worker
    on the same state. Each call is one round trip (`add` one pipelined batch of function
    calls, one per version; `watches` one pipeline)."""

    def __init__(self, client: Any, depth: int, prefix: str = "re") -> None:
        self.client = client
        self.depth = depth
        self.prefix = prefix
        self._caller = FunctionCaller(client, _LIBRARY, "the guard's counts", resend=True)
        self._replace = client.register_script(_REPLACE)
        self._conclude = client.register_script(_CONCLUDE)

    def _key(self, scene: str, kind: str, tail: str) -> str:
        return f"{self.prefix}:guard:{{{scene}}}:{kind}:{tail}"

    def add(self, flush: Flush) -> None:
        calls: list[Call] = []
        for (scene, kind, version), delta in flush.deltas.items():
            totals = self._key(scene, kind, f"v:{version}")
            calls.append((_FUNCTIONS["add"], [totals, totals + ":recent"],
                          [f"seq:{flush.source}", flush.seq, *delta, self.depth,
                           COUNTS_TTL_MS]))
        if calls:
            self._caller.run(calls)

    def totals(self, scene: str, kind: str, version: str) -> Tally:
        values = self.client.hmget(self._key(scene, kind, f"v:{version}"), Tally._fields)
        return Tally(*(int(v or 0) for v in values))

    def recent(self, scene: str, kind: str, version: str, decisions: int) -> Tally:
        raw = self.client.lrange(self._key(scene, kind, f"v:{version}:recent"), 0,
                                 self.depth - 1)
        return sum_newest(map(Tally.parse, raw), decisions)

    def watches(self, pairs: Iterable[tuple[str, str]]) -> list[Watch]:
        pairs = list(pairs)
        pipe = self.client.pipeline(transaction=False)
        for scene, kind in pairs:
            pipe.hgetall(self._key(scene, kind, "watch"))
        found = []
        for (scene, kind), raw in zip(pairs, pipe.execute(), strict=True):
            fields = {_text(k): _text(v) for k, v in raw.items()}
            if fields.get("id"):
                verdict = json.loads(fields["verdict"]) if fields.get("verdict") else None
                found.append(Watch(scene, kind, fields["id"], fields["version"],
                                   fields["previous"], int(fields["started_at_ms"]),
                                   fields["state"], Tally.parse(fields["offset"]), verdict,
                                   fields.get("owner", "")))
        return found

    def replace(self, current: Watch | None, new: Watch,
                retired: Mapping[str, Any] | None) -> bool:
        done = self._replace(
            keys=[self._key(new.scene, new.kind, "watch"),
                  self._key(new.scene, new.kind, "verdicts"),
                  self._key(new.scene, new.kind, f"v:{new.version}")],
            args=["" if current is None else current.id, new.id, new.version, new.previous,
                  new.started_at_ms, new.state,
                  "" if retired is None else _dumps(retired), VERDICTS_KEPT])
        return bool(done)

    def conclude(self, watch: Watch, expect: str, state: str, verdict: Mapping[str, Any],
                 record: bool, owner: str) -> bool:
        done = self._conclude(
            keys=[self._key(watch.scene, watch.kind, "watch"),
                  self._key(watch.scene, watch.kind, "verdicts")],
            args=[watch.id, expect, state, _dumps(verdict), "1" if record else "0",
                  VERDICTS_KEPT, owner])
        return bool(done)

    def verdicts(self, scene: str, kind: str) -> list[dict[str, Any]]:
        raw = self.client.lrange(self._key(scene, kind, "verdicts"), 0, VERDICTS_KEPT - 1)
        return [json.loads(item) for item in raw]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
