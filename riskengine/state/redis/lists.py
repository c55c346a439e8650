"""Named lists kept in Redis, each with a local Bloom filter in front (`RedisListStore`).

`RedisListStore` has the API of the in-memory `ListStore` (`contains`, `lookup`, `add`,
`remove`, `entries`, `names`, `reason`, `replace_with`, `purge_expired`), with the same
answers: expiry is judged against the event time the caller passes, and values match by
their string form (``123``, ``123.0`` and ``"123"`` are one entry; None, booleans, other
floats and containers never match). Every worker shares the entries; each keeps a Bloom
filter per list, so a value that is on no list (most of them) is answered without a round
trip, and a "maybe" is confirmed with one HGET.

Key layout
----------
``<prefix>`` is ``re`` by default; ``{…}`` is a Redis Cluster hash tag, so a list's two
keys share a slot.

``<prefix>:{list:<name>}``  (hash)
    the entries: field = the value's string form (UTF-8), value = JSON
    ``{"expires_at_ms": …, "reason": …, "value": …}`` (`value` as it was given, string
    or integer). A field whose value is not such JSON (written by hand) counts as an
    entry without expiry.
``<prefix>:{list:<name>}:config``  (hash)
    the config's entries as last written at a start: field → the first 16 hex digits of
    the SHA-1 of the entry's JSON. It tells config entries from API changes.
Changes go to every worker on the `RulesetBus` channel (``kind: list``).

Guarantees
----------
* No false negatives: an added value goes into the local filter *before* it is written
  to Redis and published, and every other worker adds it to its filter when the
  notification arrives (within a publish; when a subscription drops, the bus calls
  `rebuild` on reconnect, which reads every list again). A value added on another worker
  is therefore seen there once its notification arrived; after that, never missed.
* False positives cost one HGET and are answered False (counted in `stats`). Removed
  values keep their bits until the filter is rebuilt; a filter holding more values than
  it was sized for (``count > capacity``) is rebuilt from Redis (HSCAN) with twice the
  room, while lookups go on against the old one and concurrent adds go into both.
* Seeding (`from_config`, `reload_config`): the config's lists are written to Redis,
  merged three ways with what is there. A config entry that is new or changed since the
  last start is (re)written; one that left the config is deleted unless the API changed
  it since; values added, changed or deleted through the API otherwise stay, across
  restarts of any worker. So when config and Redis disagree, the config wins for what
  the config changed and the API's changes stay for the rest. Workers starting together
  write the same thing; the writes are idempotent.
* `entries` comes in Redis's order, not insertion order. Redis errors (down, slow) are
  raised as redis-py's exceptions for the caller's time budget and breaker to handle.

Filters are sized for ``max(min_capacity, 2 × entries)`` values at ``fp_rate`` (1024 and
1 % by default): about 2.4 bytes of memory per list value in each worker.

Wiring, in each worker process::

    bus = RulesetBus(client, scene_names, on_ruleset=...)
    lists = RedisListStore.from_config(config.lists, config.base_dir, client, bus=bus)
    bus.start()  # subscribed; filters rebuilt from Redis; active rulesets delivered
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from riskengine.exceptions import ListError
from riskengine.lists import (
    ListCatalog,
    ListEntry,
    ListStore,
    check_list,
    check_value,
    value_key,
)
from riskengine.state.redis.bloom import BloomFilter
from riskengine.state.redis.bus import RulesetBus
from riskengine.state.redis.codec import RedisStateError
from riskengine.state.redis.functions import Client

__all__ = ["RedisListStore", "value_key"]

SCAN_BATCH = 1000
WRITE_BATCH = 500
_DELETE_IF = """
local deleted = 0
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if current and string.sub(redis.sha1hex(current), 1, 16) == ARGV[i + 1] then
    deleted = deleted + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return deleted
"""
"""Delete the fields ARGV[1], ARGV[3], … whose values still have the SHA-1 prefixes
ARGV[2], ARGV[4], … (an entry changed meanwhile stays)."""


def _field(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def _unfield(raw: bytes | str) -> str:
    return raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw


def _payload(entry: ListEntry) -> str:
    return json.dumps(entry.to_dict(), sort_keys=True, separators=(",", ":"))


def _digest(payload: str | bytes) -> str:
    data = payload.encode() if isinstance(payload, str) else payload
    return hashlib.sha1(data).hexdigest()[:16]


def _entry(key: str, raw: bytes | str) -> ListEntry:
    try:
        data = json.loads(raw)
        value, expires, reason = data["value"], data["expires_at_ms"], data["reason"]
    except (ValueError, TypeError, KeyError):
        return ListEntry(key, None, "")
    if isinstance(expires, bool) or not isinstance(expires, int | None):
        expires = None
    return ListEntry(value, expires, reason if isinstance(reason, str) else "")


class RedisListStore:
    """Named lists whose entries live in Redis, each fronted by a local Bloom filter."""

    def __init__(self, client: Client, lists: Mapping[str, str], *,
                 prefix: str = "re", bus: RulesetBus | None = None,
                 fp_rate: float = 0.01, min_capacity: int = 1024) -> None:
        """`lists` maps each list name to its reason; filters are built from Redis."""
        if client.get_encoder().decode_responses:
            raise RedisStateError("RedisListStore needs a client with decode_responses "
                                  "off: list values are matched as exact UTF-8 bytes")
        self.client = client
        self.prefix = prefix
        self.fp_rate = fp_rate
        self.min_capacity = min_capacity
        self.bus: RulesetBus | None = None
        self._reasons: dict[str, str] = {}
        self._filters: dict[str, BloomFilter] = {}
        self._building: dict[str, list[BloomFilter]] = {}
        self._lock = threading.Lock()
        self._delete_if = client.register_script(_DELETE_IF)
        self._counts = {"lookups": 0, "filtered": 0, "confirmations": 0,
                        "false_positives": 0, "hits": 0, "rebuilds": 0}
        for name, reason in lists.items():
            self.create(name, reason)
        if bus is not None:
            self.attach(bus)

    @classmethod
    def from_config(cls, lists_section: Mapping[str, Any] | None, base_dir: Path | None,
                    client: Client, **options: Any) -> RedisListStore:
        """Build from the config's `lists:` section (as `ListStore.from_config`, whose
        checks and CSV reading it uses) and merge its entries into Redis (see the module
        docstring). `options` go to the constructor (`bus`, `prefix`, `fp_rate`, …)."""
        local = ListStore.from_config(lists_section, base_dir)
        store = cls(client, {name: local.reason(name) for name in local.names()}, **options)
        store.seed(local)
        return store

    def attach(self, bus: RulesetBus) -> None:
        """Publish this store's changes on `bus`, and apply the changes it delivers."""
        self.bus = bus
        bus.on_list = self.apply
        bus.on_resync = self.rebuild

    # -- keys

    def key(self, name: str) -> str:
        return f"{self.prefix}:{{list:{name}}}"

    def config_key(self, name: str) -> str:
        return f"{self.prefix}:{{list:{name}}}:config"

    # -- reading (the hot path)

    def contains(self, name: str, value: Any, at_ms: int | None = None) -> bool:
        """True if `value` is on list `name` and not expired at event time `at_ms`
        (an entry expiring at E matches while ``at_ms < E``; None: no expiry check)."""
        return self.lookup(name, value, at_ms) is not None

    def lookup(self, name: str, value: object, at_ms: int | None = None) -> ListEntry | None:
        """The live entry matching `value`, or None."""
        try:
            bloom = self._filters[name]
        except KeyError:
            raise ListError(f"unknown list {name!r}; declare it under `lists:`") from None
        key = value if type(value) is str else value_key(value)
        if key is None:
            return None
        counts = self._counts
        counts["lookups"] += 1
        if key not in bloom:
            counts["filtered"] += 1
            return None
        counts["confirmations"] += 1
        raw = self.client.hget(self.key(name), _field(key))
        if raw is None:
            counts["false_positives"] += 1
            return None
        entry = _entry(key, raw)
        expires = entry.expires_at_ms
        if expires is None or at_ms is None or at_ms < expires:
            counts["hits"] += 1
            return entry
        return None

    def entries(self, name: str) -> list[ListEntry]:
        """Every stored entry of a list, expired ones included (Redis's order)."""
        self._check(name)
        return [_entry(_unfield(f), raw) for f, raw in self._scan(self.key(name))]

    def names(self) -> list[str]:
        return sorted(self._filters)

    def reason(self, name: str) -> str:
        self._check(name)
        return self._reasons[name]

    def __len__(self) -> int:
        return len(self._filters)

    def stats(self) -> dict[str, int]:
        """Counters since start: ``lookups`` (values that could match), ``filtered``
        (answered by a filter alone), ``confirmations`` (HGETs), ``false_positives``
        (confirmations that found nothing), ``hits`` (live entries found), ``rebuilds``.
        Incremented without a lock, so under threads they are close, not exact."""
        return dict(self._counts)

    def bloom(self, name: str) -> BloomFilter:
        """The filter in front of a list (to inspect its size and fill, not to change)."""
        self._check(name)
        return self._filters[name]

    # -- changing

    def create(self, name: str, reason: str = "") -> None:
        """Declare a list in this process and build its filter from what Redis holds."""
        check_list(name, reason)
        if name in self._filters:
            raise ListError(f"list {name!r} already exists")
        self._reasons[name] = reason
        self._filters[name] = BloomFilter(self.min_capacity, self.fp_rate)
        self.rebuild(name)

    def add(self, name: str, value: str | int, *, expires_at_ms: int | None = None,
            reason: str = "") -> None:
        """Add or replace an entry (the same value added twice keeps the later one)."""
        self._check(name)
        where = f"list {name!r}"
        checked = check_value(value, where)
        if expires_at_ms is not None and (isinstance(expires_at_ms, bool)
                                          or not isinstance(expires_at_ms, int)):
            raise ListError(f"{where}: expires_at_ms must be epoch milliseconds (an integer)")
        if not isinstance(reason, str):
            raise ListError(f"{where}: reason must be a string")
        entry = ListEntry(checked, expires_at_ms, reason)
        key = str(checked)
        self._insert_local(name, (key,))  # the filter first: no window for a false "no"
        self.client.hset(self.key(name), _field(key), _payload(entry))
        if self.bus is not None:
            self.bus.publish_list(name, "add", key, entry)
        self._rebuild_if_full(name)

    def remove(self, name: str, value: object) -> bool:
        """Remove an entry; False if it was not there. Its filter bits stay set."""
        self._check(name)
        key = value_key(value)
        if key is None or not self.client.hdel(self.key(name), _field(key)):
            return False
        if self.bus is not None:
            self.bus.publish_list(name, "remove", key)
        return True

    def purge_expired(self, at_ms: int) -> int:
        """Delete entries expired at `at_ms` (an event time); returns how many went.
        An entry changed meanwhile by another worker is left alone."""
        dropped = 0
        for name in self.names():
            key = self.key(name)
            expired = {field: _digest(raw) for field, raw in self._scan(key)
                       if _expired(_entry(_unfield(field), raw), at_ms)}
            dropped += self._delete_unchanged(key, expired)
        return dropped

    def _delete_unchanged(self, key: str, digests: Mapping[bytes, str]) -> int:
        deleted = 0
        for chunk in _chunks(digests):
            args = [part for pair in chunk.items() for part in pair]
            deleted += int(self._delete_if(keys=[key], args=args))
        return deleted

    def replace_with(self, other: ListStore) -> None:
        """Make the lists exactly `other`'s (names, reasons and entries, API changes
        dropped), for every worker. To apply a changed config file and keep the API's
        changes, use `reload_config`."""
        for name in other.names():
            if name not in self._filters:
                self.create(name, other.reason(name))
            self._reasons[name] = other.reason(name)
        for name in [n for n in self._filters if n not in other.names()]:
            del self._filters[name], self._reasons[name]
        for name in other.names():
            entries = other.entries(name)
            self._insert_local(name, [str(e.value) for e in entries])
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.key(name), self.config_key(name))
                for chunk in _chunks({_field(str(e.value)): _payload(e) for e in entries}):
                    pipe.hset(self.key(name), mapping=chunk)
                pipe.execute()
            self.rebuild(name)
            if self.bus is not None:
                self.bus.publish_list(name, "reload")

    def reload_config(self, lists_section: Mapping[str, Any] | None,
                      base_dir: Path | None) -> int:
        """Apply a changed `lists:` section: new lists appear, lists gone from it are
        dropped here (their Redis keys stay), entries merge as at a start."""
        local = ListStore.from_config(lists_section, base_dir)
        for name in [n for n in self._filters if n not in local.names()]:
            del self._filters[name], self._reasons[name]
        for name in local.names():
            if name not in self._filters:
                self.create(name, local.reason(name))
            self._reasons[name] = local.reason(name)
        return self.seed(local)

    def seed(self, local: ListStore) -> int:
        """Merge the entries of `local` (the config's lists) into Redis, three ways
        (module docstring); returns how many entries were written or deleted."""
        changed = 0
        for name in local.names():
            if name in self._filters:
                changed += self._seed_list(name, local.entries(name))
        return changed

    def _seed_list(self, name: str, entries: list[ListEntry]) -> int:
        key, config_key = self.key(name), self.config_key(name)
        wanted = {_field(str(e.value)): _payload(e) for e in entries}
        digests = {field: _digest(payload) for field, payload in wanted.items()}
        stored = self.client.hgetall(config_key)
        previous = {_field(_unfield(f)): _unfield(d) for f, d in stored.items()}
        write = {f: p for f, p in wanted.items() if previous.get(f) != digests[f]}
        drop = [f for f in previous if f not in wanted]
        if not write and not drop:
            return 0
        self._insert_local(name, [_unfield(f) for f in write])
        with self.client.pipeline(transaction=False) as pipe:
            for chunk in _chunks(write):
                pipe.hset(key, mapping=chunk)
            pipe.execute()
        self._delete_unchanged(key, {field: previous[field] for field in drop})
        with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(config_key)
            for chunk in _chunks(digests):
                pipe.hset(config_key, mapping=chunk)
            pipe.execute()
        if self.bus is not None:
            self.bus.publish_list(name, "reload")
        self._rebuild_if_full(name)
        return len(write) + len(drop)

    # -- the filters

    def apply(self, name: str, op: str, value: str | None, entry: ListEntry | None) -> None:
        """Apply a change another worker made (the bus's ``on_list``)."""
        if name not in self._filters:
            return  # a list this worker's config does not declare
        if op == "add":
            key = value if value is not None else (
                str(entry.value) if entry is not None else None)
            if key is not None:
                self._insert_local(name, (key,))
                self._rebuild_if_full(name)
        elif op == "reload":
            self.rebuild(name)

    def rebuild(self, name: str | None = None) -> None:
        """Rebuild one list's filter (or every list's) from Redis, sized for twice what
        it holds; lookups use the old filter meanwhile, and adds go into both."""
        for each in self.names() if name is None else [name]:
            self._rebuild(each)

    def _rebuild(self, name: str) -> None:
        key = self.key(name)
        fresh = BloomFilter(max(self.min_capacity, 2 * int(self.client.hlen(key))),
                            self.fp_rate)
        with self._lock:
            self._building.setdefault(name, []).append(fresh)
        try:
            cursor = 0
            while True:
                cursor, batch = self.client.hscan(key, cursor, count=SCAN_BATCH)
                with self._lock:
                    for field in batch:
                        fresh.add(_unfield(field))
                if not cursor:
                    break
            with self._lock:
                if name in self._filters:
                    self._filters[name] = fresh
                    self._counts["rebuilds"] += 1
        finally:
            with self._lock:
                building = self._building[name]
                building[:] = [b for b in building if b is not fresh]

    def _insert_local(self, name: str, keys: Any) -> None:
        with self._lock:
            targets = [self._filters[name], *self._building.get(name, ())]
            for key in keys:
                for bloom in targets:
                    bloom.add(key)

    def _rebuild_if_full(self, name: str) -> None:
        bloom = self._filters.get(name)
        if bloom is not None and bloom.full and not self._building.get(name):
            self._rebuild(name)

    def _check(self, name: str) -> None:
        if name not in self._filters:
            raise ListError(f"unknown list {name!r}; known lists: "
                            f"{', '.join(self.names()) or '(none)'}")

    def _scan(self, key: str) -> Iterator[tuple[bytes, bytes]]:
        yield from self.client.hscan_iter(key, count=SCAN_BATCH)


def _expired(entry: ListEntry, at_ms: int) -> bool:
    return entry.expires_at_ms is not None and at_ms >= entry.expires_at_ms


def _chunks(mapping: Mapping[bytes, str]) -> Iterator[dict[Any, str]]:
    items = list(mapping.items())
    for start in range(0, len(items), WRITE_BATCH):
        yield dict(items[start:start + WRITE_BATCH])


def _conforms(memory: ListStore, shared: RedisListStore) -> tuple[ListCatalog, ListCatalog]:
    return memory, shared  # mypy checks both stores have the API
