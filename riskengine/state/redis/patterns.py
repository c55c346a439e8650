"""Sequence patterns with their state in Redis: the same answers as `ScenePatterns`.

Each pattern key is one string key, ``<prefix>:{<scene>|pattern|<name>|<key text>}``,
updated by the scene library's ``pattern`` function (scripts/entity.lua) in one atomic
call: forgetting by the scene clock, the sequence or absence test, storing, trimming,
and a guard of the key's last two events (a retried event gets its first answer and
changes nothing). The step predicates run here, in Python, as in memory. The event's
clock step gives the late flag (an event is late for the patterns iff it is late: no
pattern key decides it) and the scene clock after the event, `max(G, t)` unless late,
by which idle keys are forgotten; so the pattern calls go in the same pipeline as the
entity calls. Ties in time are ordered by arrival at the key, as LSNs order them in one
process.
"""

from __future__ import annotations

from typing import Any

from riskengine.patterns import MAX_PER_KEY, ScenePatterns
from riskengine.state.redis.clock import Step
from riskengine.state.redis.codec import key_text
from riskengine.state.redis.functions import Call
from riskengine.state.redis.store import STATE_TTL_FLOOR_MS, RedisSceneFeatures

__all__ = ["RedisScenePatterns"]


class RedisScenePatterns:
    """`observe` as `ScenePatterns.observe`, with the state in Redis, in two halves:
    `calls` (to send with the entity calls) and `read` (their replies)."""

    def __init__(self, patterns: ScenePatterns, scene: str, prefix: str = "re") -> None:
        self.patterns = patterns.patterns
        self.heads = tuple(f"{prefix}:{{{scene}|pattern|{p.spec.name}|"
                           for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def parts(self, event: dict[str, Any], lists: Any
              ) -> tuple[list[tuple[str, list[Any]]], list[str]]:
        """The event's pattern keys (a pattern with a null key field has none), each with
        what its call says whatever the clock step gives (kind, step mask, within, keep,
        cap, TTL, the number of steps and their counts), and the ``pattern:name`` each
        answers."""
        parts: list[tuple[str, list[Any]]] = []
        asked: list[str] = []
        for pattern, head in zip(self.patterns, self.heads, strict=True):
            key = pattern.key_of(event)
            if key is None:
                continue
            text = key_text(key if isinstance(key, tuple) else (key,))
            parts.append((f"{head}{text}}}", [
                "s" if pattern.times else "a", pattern.mask_of(event, lists), pattern.within,
                pattern.keep_ms, MAX_PER_KEY, max(2 * pattern.keep_ms, STATE_TTL_FLOOR_MS),
                len(pattern.times), *pattern.times]))
            asked.append(pattern.key)
        return parts, asked

    def calls(self, features: RedisSceneFeatures, event: dict[str, Any], step: Step,
              lists: Any, digest: bytes) -> tuple[list[Call], list[str]]:
        """The FCALLs of the event's pattern keys given its clock step, and the
        ``pattern:name`` each answers; `digest` is the event id's."""
        t = event["timestamp"]
        after = step.slowest(t if step.raised else step.clock)  # G after the event
        g: int | str = "" if after is None else after  # (the slowest partition's)
        late = 1 if step.late else 0
        function = features.pattern_function
        parts, asked = self.parts(event, lists)
        calls: list[Call] = [
            (function, (key,), (kind, t, late, g, mask, within, keep, most, ttl, digest,
                                *times))
            for key, (kind, mask, within, keep, most, ttl, _, *times) in parts]
        return calls, asked

    def read(self, asked: list[str], replies: list[Any], out: dict[str, Any]) -> None:
        """Put ``pattern:name`` → bool into `out` for every pattern (False for those not
        asked)."""
        for pattern in self.patterns:
            out[pattern.key] = False
        for name, reply in zip(asked, replies, strict=True):
            out[name] = reply == 1
