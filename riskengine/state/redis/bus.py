"""Ruleset versions in Redis and change notifications to every worker (pub/sub).

`RulesetBus` stores the versions of each scene's ruleset in Redis, makes one of them
active, and tells every process: one subscriber thread per process receives the
notifications and calls the callbacks the owner gave (the service wires them to its
`RulesetRegistry` and to a `RedisListStore`; this module knows neither).

Key layout
----------
``<prefix>`` is ``re`` by default; ``{…}`` is a Redis Cluster hash tag, so a scene's two
keys share a slot (and the Lua script below may touch both).

``<prefix>:{<scene>}:rulesets``  (hash)
    version → JSON ``{"rules": [...], "policy": {...}}``; a version name is given by the
    caller (the registry's content hash), so one name always holds one content.
``<prefix>:{<scene>}:ruleset``  (string)
    the active version of the scene.
``<prefix>:bus``  (pub/sub channel; a Redis Cluster broadcasts it to every node)
    one JSON message per change, ``origin`` being the sending bus:
    ``{"kind": "ruleset", "scene", "version", "op": "activate", "origin"}`` or
    ``{"kind": "list", "list", "value", "op": "add"|"remove"|"reload", "entry", "origin"}``
    (``entry`` is ``{value, expires_at_ms, reason}`` for an add, else null; ``value`` is
    null for a reload).

Guarantees
----------
* Activation is one Lua script: the version's body is stored (or must already be), the
  active key is set, and the message is published, atomically; a version that was never
  stored cannot become active.
* A worker that starts later, or whose subscription dropped (messages are not queued
  for absent subscribers), reads the active versions from Redis each time its
  subscription is (re)established, and calls ``on_resync`` first so list filters are
  rebuilt from Redis: nothing missed stays missed. `start` returns once the first
  subscription and that first read are done.
* Messages arrive in publish order on the one channel. ``on_ruleset`` is called when a
  scene's active version differs from the last one delivered, with the version's body
  read from Redis; a worker's own messages are not delivered back to it (its caller has
  already applied them) unless ``deliver_own``.
* A callback that raises is logged and the thread goes on; one that fails on a Redis
  connection error makes the thread subscribe again (and so resync). The thread
  reconnects by itself (redis-py re-subscribes; after that gives up, a fresh
  subscription every ``reconnect_delay`` seconds).
* Versions are never deleted (they are small): a registry that trims its own history
  leaves them in Redis.

Notifications are at-most-once per connection and the resync on reconnect covers the
gaps: a change reaches a connected worker in one publish (a few milliseconds from
`activate` to the callback in another process, in tests/redis/test_bus.py) and a
disconnected one when it reconnects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis

from riskengine.lists import ListEntry
from riskengine.state.redis.codec import RedisStateError
from riskengine.state.redis.functions import Client

__all__ = ["ListCallback", "ResyncCallback", "RulesetBus", "RulesetCallback"]

log = logging.getLogger(__name__)

RulesetCallback = Callable[[str, str, dict[str, Any]], None]
"""``on_ruleset(scene, version, body)``: make `version` live; body is ``{rules, policy}``."""
ListCallback = Callable[[str, str, str | None, ListEntry | None], None]
"""``on_list(name, op, value, entry)``: op is ``add`` (entry given), ``remove`` or
``reload`` (value None: the whole list changed)."""
ResyncCallback = Callable[[], None]
"""``on_resync()``: notifications may have been missed; re-read what is kept in Redis."""

LIST_OPS = frozenset({"add", "remove", "reload"})

_ACTIVATE = """
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
elseif redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class RulesetBus:
    """Ruleset versions in Redis, and one subscriber thread delivering changes."""

    def __init__(self, client: Client, scenes: Iterable[str], *, prefix: str = "re",
                 on_ruleset: RulesetCallback | None = None,
                 on_list: ListCallback | None = None,
                 on_resync: ResyncCallback | None = None,
                 deliver_own: bool = False, reconnect_delay: float = 0.5) -> None:
        self.client = client
        self.scenes = tuple(scenes)
        self.prefix = prefix
        self.channel = f"{prefix}:bus"
        self.on_ruleset = on_ruleset
        self.on_list = on_list
        self.on_resync = on_resync
        self.deliver_own = deliver_own
        self.reconnect_delay = reconnect_delay
        self.origin = uuid.uuid4().hex
        self.resyncs = 0
        """How many times the subscription was (re)established and Redis re-read in full."""
        self._activate = client.register_script(_ACTIVATE)
        self._delivered: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    # -- keys

    def versions_key(self, scene: str) -> str:
        return f"{self.prefix}:{{{scene}}}:rulesets"

    def active_key(self, scene: str) -> str:
        return f"{self.prefix}:{{{scene}}}:ruleset"

    # -- rulesets

    def put_version(self, scene: str, version: str, body: Mapping[str, Any]) -> None:
        """Store a version's body without making it active."""
        self.client.hset(self.versions_key(scene), version, _dumps(body))

    def activate(self, scene: str, version: str,
                 body: Mapping[str, Any] | None = None) -> bool:
        """Make `version` the scene's active one (storing `body` first when given) and
        notify every worker. False if no body is given and the version is not stored."""
        message = _dumps({"kind": "ruleset", "scene": scene, "version": version,
                          "op": "activate", "origin": self.origin})
        done = self._activate(keys=[self.versions_key(scene), self.active_key(scene)],
                              args=[version, "" if body is None else _dumps(body),
                                    self.channel, message])
        if done and not self.deliver_own:
            with self._lock:
                self._delivered[scene] = version
        return bool(done)

    def active(self, scene: str) -> tuple[str, dict[str, Any]] | None:
        """The active version of a scene and its body, or None when none was activated."""
        version = self.client.get(self.active_key(scene))
        if version is None:
            return None
        name = _text(version)
        body = self.version(scene, name)
        return None if body is None else (name, body)

    def version(self, scene: str, version: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.versions_key(scene), version)
        if raw is None:
            return None
        body: dict[str, Any] = json.loads(raw)
        return body

    def versions(self, scene: str) -> list[str]:
        return sorted(_text(v) for v in self.client.hkeys(self.versions_key(scene)))

    # -- lists

    def publish_list(self, name: str, op: str, value: str | None = None,
                     entry: ListEntry | None = None) -> None:
        """Tell every worker a list changed (`RedisListStore` calls this after writing)."""
        if op not in LIST_OPS:
            raise RedisStateError(f"list op {op!r} is not one of {', '.join(sorted(LIST_OPS))}")
        self.client.publish(self.channel, _dumps({
            "kind": "list", "list": name, "value": value, "op": op,
            "entry": None if entry is None else entry.to_dict(), "origin": self.origin}))

    # -- the subscriber thread

    def start(self, timeout: float = 10.0) -> None:
        """Start the subscriber thread; return once it is subscribed and has read the
        active versions (RedisStateError if that takes longer than `timeout` s)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="riskengine-bus", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RedisStateError(f"could not subscribe to {self.channel!r} within "
                                  f"{timeout} s; check that Redis is reachable")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self._ready.clear()

    def __enter__(self) -> RulesetBus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None:
                        self._handle(message)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning("bus %s: connection lost (%s); reconnecting", self.channel, exc)
                self._stop.wait(self.reconnect_delay)
            except Exception:
                log.exception("bus %s: unexpected error; resubscribing", self.channel)
                self._stop.wait(self.reconnect_delay)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self.resync()
            self._ready.set()
        elif kind == "message":
            self._dispatch(message["data"])

    def resync(self) -> None:
        """Re-read what Redis holds: ``on_resync``, then the active version of every scene
        whose active version differs from the last one delivered."""
        if self.on_resync is not None:
            self._call(self.on_resync)
        for scene in self.scenes:
            current = self.active(scene)
            if current is not None:
                self._deliver_ruleset(scene, *current)
        self.resyncs += 1

    def _dispatch(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            kind, origin = message["kind"], message.get("origin")
        except (ValueError, TypeError, KeyError):
            log.warning("bus %s: ignored a message that is not ours", self.channel)
            return
        if origin == self.origin and not self.deliver_own:
            return
        if kind == "ruleset":
            scene, version = message.get("scene"), message.get("version")
            if scene not in self.scenes or not isinstance(version, str):
                return
            body = self.version(scene, version)
            if body is None:
                log.warning("bus: scene %s version %s is not stored; ignored", scene, version)
                return
            self._deliver_ruleset(scene, version, body)
        elif kind == "list" and self.on_list is not None:
            op, name, value = message.get("op"), message.get("list"), message.get("value")
            raw_entry = message.get("entry")
            if op not in LIST_OPS or not isinstance(name, str):
                return
            entry = None
            if isinstance(raw_entry, dict):
                entry = ListEntry(raw_entry["value"], raw_entry.get("expires_at_ms"),
                                  raw_entry.get("reason", ""))
            self._call(self.on_list, name, op, value, entry)

    def _deliver_ruleset(self, scene: str, version: str, body: dict[str, Any]) -> None:
        with self._lock:
            if self._delivered.get(scene) == version:
                return
            self._delivered[scene] = version
        if self.on_ruleset is not None:
            self._call(self.on_ruleset, scene, version, body)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except (redis.ConnectionError, redis.TimeoutError):
            raise  # Redis failed under the callback: resubscribe, and resync then
        except Exception:
            log.exception("bus %s: callback %s failed for %r", self.channel,
                          getattr(callback, "__name__", callback), args[:2])
