"""The clock key: one arrival order (LSNs) and every scene's clock G, taken in one step.

``<prefix>:{clock}`` is a hash shared by every worker and every scene of the prefix:

``format``
    the layout of the state (`FORMAT`), followed by ``/b<n>`` when the entities of each
    key set are spread over n buckets rather than `DEFAULT_BUCKETS`; state without it, or
    of another layout, is refused at start. The first process on empty state writes it
    (with the bucket count it was given); later ones take the count from it, and one
    given another count is refused (an entity's keys depend on it);
``lsn``
    the last LSN handed out (one counter for all scenes);
``G:<scene>``
    the scene clock G: the largest time of the scene's accepted events that were not
    late (docs/semantics.md);
``G:<scene>|<partition>``
    the clock of one partition of a stream worker (``topic#n``): lateness by its own
    clock; the step also answers the slowest of the scene's other clocks, by which the
    entities trim, forget and sweep (`Step.forget`);
``P:<scene>``
    set once the scene has a partition clock (until then a step reads no other clock).

Each event takes one *clock step* (the ``clock`` function of the scene library,
scripts/entity.lua): the next LSN, G before the event and whether the event is late
(``t < G − L``), G raised to t when it is not, all atomically. LSN order is therefore the
order in which G was taken, whichever worker took it, and the decision log's LSN order
replays the lateness of every event exactly. On one server the step is part of the
event's one call (the ``event`` function), after its idempotency lookup: a duplicate
takes none. On a cluster it goes out in the same pipeline as the event's idempotency
lookup; an event found to be a duplicate changes nothing: if its step raised G (only a
duplicate carrying a later time than its first decision can), an ``unclock`` call puts
G back. Its LSN is a gap.

The counter survives restarts with persistence. If Redis comes back without it, a
process never hands out an LSN at or below the last one it saw (the step takes that as
a floor); LSNs other processes had taken may then be handed out again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from riskengine.state.redis.codec import RedisStateError, StateUnavailableError
from riskengine.state.redis.functions import Call, Client

log = logging.getLogger("riskengine.state")

FORMAT = "4"
"""The layout of the state this version writes: one clock key, lateness by the scene
clock (docs/semantics.md), entries holding the micro-units Python computed (a slot per
target and kind, riskengine/state/redis/codec.py), an entity too big for its bucket
field in its own hash and sorted set of entries (riskengine/state/redis/__init__.py).
Version 3 kept such an entity whole in a string, then in a hash of entry chunks;
version 2 stored value texts the script quantised itself; version 1 kept
``<prefix>:lsn`` and ``<prefix>:{<scene>}:G``."""


DEFAULT_BUCKETS = 4096
"""Buckets per key set when the state is created without a count (see
riskengine/state/redis/__init__.py, Key layout: about the number of live entities / 50)."""
MAX_BUCKETS = 1 << 24


def layout_format(buckets: int) -> str:
    """The ``format`` field of state whose key sets have `buckets` buckets each."""
    return FORMAT if buckets == DEFAULT_BUCKETS else f"{FORMAT}/b{buckets}"


def recorded_buckets(found: bytes | str | None) -> int | None:
    """The bucket count of a ``format`` field written by this layout, None for another
    layout (or none)."""
    text = b"" if found is None else found.encode() if isinstance(found, str) else found
    if text == FORMAT.encode():
        return DEFAULT_BUCKETS
    head, _, count = text.partition(b"/b")
    if head != FORMAT.encode() or not count.isdigit() or not 1 <= int(count) <= MAX_BUCKETS:
        return None
    # only the text this version writes: the clock step compares the field as it is
    return int(count) if layout_format(int(count)).encode() == text else None


FORMAT_CHANGED = "RISKENGINE_FORMAT"
"""The code of a clock step's error reply when the clock key holds another format than
the caller's (scripts/entity.lua, ``clock``)."""


class StateFormatError(StateUnavailableError):
    """The Redis state was written by another version of riskengine and cannot be read."""


@dataclass(frozen=True, slots=True)
class Step:
    """What an event's clock step gave: its LSN, G before it (None: no event yet), and
    whether it is late."""

    lsn: int
    clock: int | None
    late: bool
    raised: bool
    """The step moved G (to the event's time)."""
    others: int | None = None
    """The slowest clock of the scene's other clock domains (partitions), None without
    any: what the keys are forgotten by, beside this one."""

    def slowest(self, own: int | None) -> int | None:
        """The slowest of `own` (this domain's clock) and the others': keys a faster
        partition has left behind may still be read by a slower one."""
        if own is None:
            return self.others
        return own if self.others is None else min(own, self.others)

    @property
    def forget(self) -> int | None:
        """The clock keys are forgotten by at this event (before it)."""
        return self.slowest(self.clock)


class SharedClock:
    """The clock key of one prefix (see the module docstring); the calls go through a
    scene library's ``clock``, ``unclock`` and ``recall`` functions. `buckets`: the
    bucket count to create the state with (None: the one the state has, else
    `DEFAULT_BUCKETS`); `check` settles `self.buckets`."""

    def __init__(self, client: Client, prefix: str = "re", buckets: int | None = None
                 ) -> None:
        if buckets is not None and (type(buckets) is not int
                                    or not 1 <= buckets <= MAX_BUCKETS):
            raise RedisStateError(f"buckets must be a whole number from 1 to {MAX_BUCKETS:,}; "
                                  f"got {buckets!r:.40}")
        self.client = client
        self.prefix = prefix
        self.key = f"{prefix}:{{clock}}"
        self.wanted = buckets
        self.buckets = DEFAULT_BUCKETS if buckets is None else buckets
        self.format = layout_format(self.buckets)
        self.last_lsn = 0
        """The largest LSN this process has been given (the floor of the next step)."""

    def check(self, scenes: Sequence[str]) -> None:
        """Refuse state written under another layout (StateFormatError, naming what to
        delete): the clock key of another format, or the keys of the per-key layout; or
        state whose bucket count is not the one asked for. Take the state's bucket count;
        on empty state, record the count (the first process to do so wins)."""
        for _ in range(2):
            found, lsn = self.client.hmget(self.key, ["format", "lsn"])  # one read: a step
            recorded = recorded_buckets(found)                          # writes both at once
            if recorded is not None:
                self._take(recorded)
                return
            old = [key for key in (f"{self.prefix}:lsn",
                                   *(f"{self.prefix}:{{{scene}}}:G" for scene in scenes))
                   if self.client.exists(key)]
            if found is not None or lsn is not None or old:
                break
            if self.client.hsetnx(self.key, "format", self.format):
                self._take(self.buckets)
                return  # else another process wrote it first: read what it wrote
        what = ", ".join(old) if old else f"{self.key} (format {_text(found)})"
        raise StateFormatError(
            f"the Redis state under prefix {self.prefix!r} was written by another version of "
            f"riskengine ({what}): this version writes the layout of format {FORMAT} "
            f"(one scene clock in {self.key}) and does not read older state. Delete every "
            f"key matching {self.prefix}:* (on a database used by riskengine alone: "
            f"FLUSHDB, on every primary of a cluster), or use another prefix")

    def _take(self, recorded: int) -> None:
        if self.wanted is not None and self.wanted != recorded:
            raise StateFormatError(
                f"the Redis state under prefix {self.prefix!r} spreads each key set's "
                f"entities over {recorded:,} buckets (recorded in {self.key}, field "
                f"format), and this process was given {self.wanted:,}: an entity's keys "
                f"depend on the count, so it is fixed for the life of the state. Give "
                f"buckets={recorded} (or none: the state's count is taken), or start "
                f"from empty state. (State written before the count was recorded says "
                f"{FORMAT!r}, the default count; if it was written with another count N, "
                f"set the field to '{FORMAT}/bN'.)")
        self.buckets = recorded
        self.format = layout_format(recorded)

    def recheck(self, scenes: Sequence[str], error: BaseException) -> bool:
        """After a failed call: when `error` is a clock step's refusal of the clock key's
        format (written again since `check`: the state was emptied and made again by a
        process of another bucket count), check again (taking the new count, or raising
        `StateFormatError`) and return True; otherwise False."""
        if FORMAT_CHANGED not in str(error):
            return False
        self.check(scenes)
        return True

    def step_args(self, scene: str, t: int, lateness_ms: int, domain: str | None = None
                  ) -> tuple[Any, ...]:
        """The arguments of one event's clock step, on the clock of `domain` (a partition;
        None: the scene's one clock)."""
        name = scene if domain is None else f"{scene}|{domain}"
        return (name, t, lateness_ms, self.format, self.last_lsn, scene)

    def step_call(self, function: str, scene: str, t: int, lateness_ms: int,
                  domain: str | None = None) -> Call:
        """The FCALL of one event's clock step (the ``clock`` function)."""
        return (function, (self.key,), self.step_args(scene, t, lateness_ms, domain))

    def taken(self, reply: Any, t: int) -> Step:
        """The `Step` of a clock step's reply, for an event at `t`."""
        lsn, clock, late = int(reply[0]), reply[1], reply[2] == 1
        if lsn > self.last_lsn:
            self.last_lsn = lsn
        before = None if clock is None else int(clock)
        others = None if len(reply) < 4 or reply[3] is None else int(reply[3])
        return Step(lsn, before, late, not late and (before is None or t > before), others)

    def undo_call(self, function: str, scene: str, t: int, step: Step,
                  domain: str | None = None) -> Call:
        """The FCALL that puts G back after `step` raised it for a duplicate."""
        name = scene if domain is None else f"{scene}|{domain}"
        return (function, (self.key,), (name, t, "" if step.clock is None else step.clock))

    def read(self, scene: str) -> int | None:
        """G of `scene` as it stands (one round trip), None before its first event. The
        format is read with it: when the state was emptied and made again under another
        bucket count, this process checks again first (`check`: taking the new count, or
        raising `StateFormatError`), so what it reads next is where the state's writers
        write. (Only if the state is emptied once more between the two reads does
        `check` record this process's count, as its next event would.)"""
        found, written = self.client.hmget(self.key, [f"G:{scene}", "format"])
        if written is not None and _text(written) != self.format:
            before = self.buckets
            self.check([scene])
            log.warning("the Redis state under prefix %r was made again with %s buckets "
                        "(this process had %s); this process now reads and writes with "
                        "them", self.prefix, f"{self.buckets:,}", f"{before:,}")
        return None if found is None else int(found)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return "missing"
    return (value.decode(errors="replace") if isinstance(value, bytes) else value)[:20]
