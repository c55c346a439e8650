"""Sequence patterns per key: ``A then B ×3 within 5m`` and ``A not followed by B within T``.

A scene's ``patterns:`` are read from the config and evaluated for every event of the
scene; rules read them as ``pattern("name")`` (True or False). The engine adds each result
to the decision's features as ``"pattern:name"``, so the worker, the service and
``riskengine replay`` — all `Engine` — give the same answers for the same events.

    patterns:
      - name: login_then_3_fails           # a sequence: each step an expression
        by: [account]
        steps:
          - "result == 'ok'"
          - {when: "result == 'fail'", times: 3}
        within: 5m
      - name: withdrawal_unconfirmed       # an absence
        by: [account]
        first: "kind == 'withdraw'"
        not_followed_by: "kind == 'confirm'"
        within: 10m

Semantics, for event *e* with time *t* on key *k* (the ``by`` fields; a null one makes
the pattern False and stores nothing):

- **Sequence** (`steps`): True when *e* matches the last step and the key's stored
  events *x* with ``t − within < t(x) ≤ t`` and earlier arrival, plus *e* as the last
  element, contain the steps in order — step *i* matched ``times`` times — ordered by
  (time, arrival). Other events may come between (relaxed contiguity). So with ``×3``,
  the 3rd, 4th, … failure within the window after a login are each True.
- **Absence** (`first` / `not_followed_by`): an event matching `first` opens a
  deadline ``t(A) + within``; an event matching `not_followed_by` with
  ``t(A) < t ≤ t(A) + within`` closes it. The pattern is True at the first event of the
  key whose time is past an open deadline (``t > t(A) + within``); that deadline is then
  spent (it fires once). Data-driven only: nothing fires without a later event of the key.
- Late events (`late: true`: older than the scene clock G by more than the lateness)
  read the patterns but change nothing; an event that is not late is never more than
  the lateness behind its key's newest (which is at most G). Duplicates (the idempotency
  guard) never reach the patterns. Order is arrival order, as for
  features: an event that arrives after a later-timestamped one of its key does not
  precede it.
- Forgetting: a key whose newest event is at or before the scene clock after the event
  (G, or the event's time when it is on time and later) minus ``within + lateness`` (a
  sequence: value-neutral, no event that is not late can need it) or
  ``2 × within + lateness`` (an absence) starts afresh. So an absence fires only at an
  event of the key that comes within ``within + lateness`` after the deadline passed.
- Memory: per key, the events matching some step (or the open deadlines) within that
  span of the key's newest, at most `MAX_PER_KEY` (the oldest go first); forgotten keys
  are freed every 1024 events.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from riskengine.durations import parse_duration
from riskengine.exceptions import ConfigError
from riskengine.lists import Lists
from riskengine.rules.expr import ExprNames, compile_expression, pattern_key

__all__ = ["MAX_PER_KEY", "PatternSpec", "ScenePatterns", "parse_patterns"]

MAX_PER_KEY = 1000
"""Stored step events per key and pattern (or open deadlines, for an absence)."""
_SWEEP_EVERY = 1024
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")

Predicate = Callable[..., Any]




@dataclass(frozen=True, slots=True)
class PatternSpec:
    """One pattern as configured: `steps` ((expression, times), ...) for a sequence, or
    `first` and `not_followed_by` for an absence."""

    name: str
    by: tuple[str, ...]
    within_ms: int
    steps: tuple[tuple[str, int], ...] = ()
    first: str | None = None
    not_followed_by: str | None = None

    @property
    def key(self) -> str:
        return pattern_key(self.name)


def parse_patterns(raw: object, scene: str) -> tuple[PatternSpec, ...]:
    """A scene's ``patterns:`` list → specs; `ConfigError` naming the pattern otherwise."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"scene {scene!r}: patterns must be a list")
    specs: list[PatternSpec] = []
    for item in raw:
        spec = _parse_one(item, scene)
        if any(s.name == spec.name for s in specs):
            raise ConfigError(f"scene {scene!r}: two patterns are named {spec.name!r}")
        specs.append(spec)
    return tuple(specs)


def _parse_one(item: object, scene: str) -> PatternSpec:
    if not isinstance(item, Mapping):
        raise ConfigError(f"scene {scene!r}: each pattern is a mapping with name, by, within "
                          f"and steps (or first and not_followed_by), got {item!r:.80}")
    name = item.get("name")
    if not isinstance(name, str) or not name or len(name) > 100 or \
            not set(name) <= _NAME_CHARS:
        raise ConfigError(f"scene {scene!r}: a pattern needs a name of letters, digits, "
                          f"'_', '-' or '.', got {name!r:.80}")
    where = f"scene {scene!r} pattern {name!r}"
    sequence = "steps" in item
    allowed = {"name", "by", "within"} | ({"steps"} if sequence else
                                         {"first", "not_followed_by"})
    unknown = set(item) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(map(str, unknown))}; allowed: "
                          f"{', '.join(sorted(allowed))} (a pattern has steps, or first and "
                          f"not_followed_by)")
    by = item.get("by")
    if isinstance(by, str):
        by = [by]
    if not isinstance(by, list) or not by or not all(isinstance(f, str) and f for f in by):
        raise ConfigError(f"{where}: by must name the key field(s), got {by!r:.80}")
    if "within" not in item:
        raise ConfigError(f"{where}: within (a duration such as 5m) is required")
    within = parse_duration(item["within"], what=f"{where} within")
    if within <= 0:
        raise ConfigError(f"{where}: within must be positive")
    if sequence:
        steps = _parse_steps(item["steps"], where)
        return PatternSpec(name, tuple(by), within, steps=steps)
    first, later = item.get("first"), item.get("not_followed_by")
    if not isinstance(first, str) or not isinstance(later, str) or not first or not later:
        raise ConfigError(f"{where}: give steps (a sequence), or first and not_followed_by "
                          "(an absence), each an expression")
    return PatternSpec(name, tuple(by), within, first=first, not_followed_by=later)


def _parse_steps(raw: object, where: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, list) or not raw or len(raw) > 20:
        raise ConfigError(f"{where}: steps must be a list of 1 to 20 steps")
    steps = []
    for step in raw:
        if isinstance(step, str):
            steps.append((step, 1))
            continue
        if not isinstance(step, Mapping) or "when" not in step or \
                not set(step) <= {"when", "times"}:
            raise ConfigError(f"{where}: a step is an expression or {{when: EXPR, times: N}}, "
                              f"got {step!r:.80}")
        times = step.get("times", 1)
        if type(times) is not int or not 1 <= times <= 100:
            raise ConfigError(f"{where}: times must be an integer from 1 to 100, got "
                              f"{times!r:.40}")
        if not isinstance(step["when"], str) or not step["when"]:
            raise ConfigError(f"{where}: a step's when must be an expression")
        steps.append((step["when"], times))
    return tuple(steps)


# -- evaluation --------------------------------------------------------------------------

class _Pattern:
    """One pattern's compiled predicates and per-key state."""

    def __init__(self, spec: PatternSpec, lateness_ms: int, names: ExprNames) -> None:
        self.spec = spec
        self.key = spec.key
        self.by = spec.by
        self.single = spec.by[0] if len(spec.by) == 1 else None
        self.within = spec.within_ms
        self.lateness = lateness_ms
        # how long a key's events are kept after its newest: a sequence needs `within`;
        # an absence's deadline must stay open until `within + lateness` after it passed
        self.keep_ms = (1 if spec.steps else 2) * spec.within_ms + lateness_ms
        origin = f"pattern {spec.name!r}"
        if spec.steps:
            self.predicates = tuple(
                compile_expression(text, names=names, origin=f"{origin} step {i + 1}")
                for i, (text, _) in enumerate(spec.steps))
            self.times = tuple(times for _, times in spec.steps)
        else:
            assert spec.first is not None and spec.not_followed_by is not None
            self.predicates = (
                compile_expression(spec.first, names=names, origin=f"{origin} first"),
                compile_expression(spec.not_followed_by, names=names,
                                   origin=f"{origin} not_followed_by"))
            self.times = ()
        # key → deque of (t, lsn, mask) for a sequence, (t, lsn) open deadlines for an
        # absence; in arrival order; plus the key's newest time, for idle sweeps
        self.state: OrderedDict[Any, tuple[deque[tuple[int, ...]], list[int]]] = OrderedDict()

    def mask_of(self, event: dict[str, Any], lists: Lists) -> int:
        """Bit i set when the event matches predicate i (step i; or first, followed by)."""
        mask = 0
        for i, predicate in enumerate(self.predicates):
            if predicate(event, _NO_FEATURES, lists):
                mask |= 1 << i
        return mask

    def key_of(self, event: Mapping[str, Any]) -> Any:
        if self.single is not None:
            return event.get(self.single)
        values = tuple(event.get(f) for f in self.by)
        return None if None in values else values

    def observe(self, event: dict[str, Any], lsn: int, t: int, late: bool, lists: Lists,
                clock: int) -> bool:
        key = self.key_of(event)
        if key is None:
            return False
        mask = self.mask_of(event, lists)
        entry = self.state.get(key)
        if entry is not None and entry[1][0] <= clock - self.keep_ms:
            del self.state[key]  # idle for long enough: forgotten
            entry = None
        if entry is None:
            if mask == 0 or late:
                return False
            entry = (deque(), [t])
            self.state[key] = entry
        else:
            self.state.move_to_end(key)
        held, newest = entry
        result = (self._sequence(held, mask, t, lsn) if self.times
                  else self._absence(held, mask, t, late))
        if late:
            return result
        if t > newest[0]:
            newest[0] = t
        if self.times and mask:
            held.append((t, lsn, mask))
        elif not self.times and mask & 1:
            held.append((t, lsn))
        floor = newest[0] - self.keep_ms
        while held and (held[0][0] <= floor or len(held) > MAX_PER_KEY):
            held.popleft()
        return result

    def _sequence(self, held: deque[tuple[int, ...]], mask: int, t: int, lsn: int) -> bool:
        steps = len(self.times)
        last = 1 << (steps - 1)
        if not mask & last:
            return False
        low = t - self.within
        candidates = sorted(x for x in held if low < x[0] <= t)
        i = 0
        for step in range(steps):
            bit = 1 << step
            need = self.times[step] - (1 if step == steps - 1 else 0)
            while need and i < len(candidates):
                if candidates[i][2] & bit:
                    need -= 1
                i += 1
            if need:
                return False
        return True

    def _absence(self, held: deque[tuple[int, ...]], mask: int, t: int, late: bool) -> bool:
        within = self.within
        if mask & 2 and not late:  # closes the deadlines it falls within
            kept = [a for a in held if not a[0] < t <= a[0] + within]
            if len(kept) != len(held):
                held.clear()
                held.extend(kept)
        expired = [a for a in held if a[0] + within < t]
        if not expired:
            return False
        if not late:  # each deadline fires once
            kept = [a for a in held if a[0] + within >= t]
            held.clear()
            held.extend(kept)
        return True

    def sweep(self, clock: int) -> None:
        """Free the keys `observe` would treat as forgotten (memory only: results do not
        depend on when this runs). Keys are in touch order, which is nearly time order."""
        state = self.state
        floor = clock - self.keep_ms
        while state:
            key = next(iter(state))
            if state[key][1][0] > floor:
                break
            del state[key]


_NO_FEATURES: dict[str, Any] = {}


class ScenePatterns:
    """The patterns of one scene and their state; `observe` gives every pattern's result
    for one event and updates the state (unless the event is late)."""

    def __init__(self, specs: tuple[PatternSpec, ...], lateness_ms: int, names: ExprNames
                 ) -> None:
        self.patterns = tuple(_Pattern(s, lateness_ms, names) for s in specs)
        self.keys = tuple(p.key for p in self.patterns)
        self._countdown = _SWEEP_EVERY

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def observe(self, event: dict[str, Any], lsn: int, late: bool, lists: Lists, clock: int,
                out: dict[str, Any]) -> None:
        """Put ``pattern:name`` → bool into `out` for every pattern; `clock` is the scene
        clock after the event, which idle keys are forgotten by."""
        t = event["timestamp"]
        for pattern in self.patterns:
            out[pattern.key] = pattern.observe(event, lsn, t, late, lists, clock)
        self._countdown -= 1
        if not self._countdown:
            self._countdown = _SWEEP_EVERY
            for pattern in self.patterns:
                pattern.sweep(clock)

    def stats(self) -> dict[str, int]:
        return {"pattern_keys": sum(len(p.state) for p in self.patterns),
                "pattern_entries": sum(len(h) for p in self.patterns
                                       for h, _ in p.state.values())}

    def dump(self) -> dict[str, list[tuple[Any, list[tuple[int, ...]], int]]]:
        return {p.spec.name: [(k, list(h), n[0]) for k, (h, n) in p.state.items()]
                for p in self.patterns}

    def load(self, data: Mapping[str, list[tuple[Any, list[tuple[int, ...]], int]]]) -> None:
        for pattern in self.patterns:
            pattern.state.clear()
            for key, held, newest in data.get(pattern.spec.name, ()):
                pattern.state[key] = (deque(tuple(x) for x in held), [newest])
