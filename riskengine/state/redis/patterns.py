"""Sequence patterns with their state in Redis: the same answers as `ScenePatterns`.

Each pattern key is one string key, ``<prefix>:{<scene>|pattern|<name>|<key text>}``,
updated by the scene library's ``pattern`` function (scripts/entity.lua) in one atomic
call: forgetting by the scene clock, the sequence or absence test, storing, trimming,
and a guard of the key's last two events (a retried event gets its first answer and
changes nothing). The step predicates run here, in Python, as in memory; all pattern
keys of an event go in one pipeline, after the features (whose `late` they need).
Ties in time are ordered by arrival at the key, as LSNs order them in one process.
"""

from __future__ import annotations

from typing import Any

from riskengine.patterns import MAX_PER_KEY, ScenePatterns
from riskengine.state.redis.codec import event_digest, key_text
from riskengine.state.redis.functions import Call
from riskengine.state.redis.store import MIN_TTL_MS, RedisSceneFeatures

__all__ = ["RedisScenePatterns"]


class RedisScenePatterns:
    """`observe` as `ScenePatterns.observe`, with the state in Redis."""

    def __init__(self, patterns: ScenePatterns, scene: str, prefix: str = "re") -> None:
        self.patterns = patterns.patterns
        self.heads = tuple(f"{prefix}:{{{scene}|pattern|{p.spec.name}|"
                           for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def observe(self, features: RedisSceneFeatures, event: dict[str, Any], late: bool,
                clock: int | None, lists: Any, out: dict[str, Any]) -> None:
        """Put ``pattern:name`` → bool into `out` for every pattern (one round trip)."""
        calls: list[Call] = []
        asked: list[str] = []
        t = event["timestamp"]
        digest = event_digest(event["event_id"])
        g: int | str = "" if clock is None else clock
        function = features.pattern_function
        for pattern, head in zip(self.patterns, self.heads, strict=True):
            out[pattern.key] = False
            key = pattern.key_of(event)
            if key is None:
                continue
            text = key_text(key if isinstance(key, tuple) else (key,))
            calls.append((function, (f"{head}{text}}}",), (
                "s" if pattern.times else "a", t, 1 if late else 0, g,
                pattern.mask_of(event, lists), pattern.within, pattern.lateness,
                pattern.keep_ms, MAX_PER_KEY, max(2 * pattern.keep_ms, MIN_TTL_MS), digest,
                *pattern.times)))
            asked.append(pattern.key)
        if calls:
            for name, reply in zip(asked, features.run_calls(calls), strict=True):
                out[name] = reply == 1
