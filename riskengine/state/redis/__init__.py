"""Scene features with their state in Redis: many workers, one truth (docs/semantics.md).

`RedisSceneFeatures(client, scene_config).compute(event, lsn)` returns what the in-memory
`SceneFeatures.compute` returns, `(features, late)`, for the same events in the same
order; tests/redis/ checks it event by event against tests/oracle.py. `RedisDecisionStore`
remembers whole decisions by event id.

Key layout
----------
An *entity* is (scene, key fields B, key value): all features keyed by B share it (the
seed's fork). Every key of an entity carries the hash tag ``{<scene>|<B>|<bucket>}``, so
in Redis Cluster an entity, and its bucket, live on one slot:

``re:{<scene>|<B>|<bucket>}:<sig>``  (hash)
    the *bucket*: small entities are fields of it, field = the key value text, value =
    the entity blob. ``<B>`` is the key fields joined by ``+``; ``<bucket>`` is
    ``blake2b(key value) mod buckets``; ``<sig>`` hashes the definitions of the features
    keyed by B, so a changed definition starts from fresh state. Kept listpack-encoded
    (a few bytes of overhead per entity instead of a Redis key's ~100): an entity goes
    into its bucket while its blob fits ``hash-max-listpack-value`` (read from the
    server; 64 by default, 256 is a good setting) and buckets should hold fewer than
    ``hash-max-listpack-entries`` (128 by default) entities: ``buckets`` ≈ live
    entities / 50.
``re:{<scene>|<B>|<bucket>}:<sig>:<key value>``  (string)
    the entity's *own key*, where it lives once its blob outgrows a bucket field (a busy
    key); it moves back when it shrinks.
``re:{<scene>}:G``
    the scene clock G (string), shared by the workers.
``re:id:{<scene>|<event id>}``
    an idempotency record, ``<t>|<decision JSON>`` (`RedisDecisionStore`).

The key value text is Python-equality canonical (``1``, ``1.0`` and ``True`` are one key;
strings are prefixed with ``'``), JSON for composite keys, a digest beyond 120 characters.

The entity blob
---------------
``msgpack(header) + msgpack([header − base, entries, tiles, guard])``: ``header`` is the
newest time the entity holds (what the sweep reads); ``entries`` is one flat array, per
stored event ``t − base``, its group mask (only when B has several groups of features,
i.e. different `where` filters, kinds or hops), and one value text per target field
(`codec`: the value as it came in, plus the exact micro-units or the distinct key only
when the script could not derive them); ``tiles`` holds per tiled group one partial
aggregate per tile ``floor(t/H)``; ``guard`` holds the last `guard_depth` events
(6-byte id digest, time, flags, their values). Entries are sorted by (time, arrival),
which is LSN order for one writer.

Memory: an entry costs its time offset (1–5 bytes), its mask (0–1) and its values (a
type byte and the text: ``'acct-42``, ``1234.5``), 10–20 bytes; an entity in a bucket
adds its field name, the blob header and its guard record (about 45 bytes with the
seed's three features); a busy entity in its own key adds a Redis key (~100 bytes).
Measured with the seed's three features, `hash-max-listpack-value 256` (bytes freed by
deleting the state, Lua VM reset on both sides; MEMORY USAGE of the keys agrees within
25 %): a steady stream of 440 active accounts holds 15 bytes per retained entry, 36 per
event inside the horizon (tests/redis/test_redis_memory.py); the benchmark's day of
transfers (50,000 events, mostly cold keys, 256 buckets) 49 bytes per retained entry
(39 without guard records). INFO `used_memory` deltas across a run also count the Lua
VM's uncollected garbage and Redis's per-command latency histograms, so they are not a
measure of the state.

One call per entity
-------------------
One Lua script per `EntityPlan` (the plan is prepended as a Lua table, so the per-event
arguments are values only) does atomically: the idempotency guard (this event id already
applied within the horizon → the stored answer, nothing changes); forgetting (the stored
events go when ``maxts ≤ G − L − Wmax(B)``); the lateness test ``t < maxts − L``;
trimming what no event can read (history entries ``≤ maxts − L − W`` of their group,
tiles before ``floor((maxts − L − W)/H)``, raw entries of tiles before
``floor((maxts − L)/H)``); every feature value of the entity (history windows by one
backward scan over the entries; tiled windows by whole tiles plus the raw entries of the
event's own tile, or whole tiles only when the event is late); storing the event (unless
late or filtered out); and the guard record. Every entity of an event is one EVALSHA in
one pipeline, with the scene clock script.

An event late on one key but on time on another is found late only when the replies
come back: a second round trip then takes it back where it was stored (the entry, and
its tiles rebuilt from their raw entries) and rescores it as late there. Late events
cost two round trips; the others one.

Exact sums: micro-units ``q(v) = round(v·1e6)`` are integers. The script derives ``q``
from the value text itself (the same IEEE product and half-to-even rounding as Python)
when ``|v·1e6| < 2^52``; larger ones come as decimal text. Sums are kept in doubles below
2^52, where every addition is exact, and spill into base-10^4 limbs beyond; squares are
summed as ``qa², qa·qb, qb²`` with ``q = qa·2^26 + qb``. Python rebuilds the integers
and applies the contract's formulas (``S / 1e6``, ``sqrt(k·S2 − S²) / (k·1e6)``).
``min``/``max`` compare numbers as doubles (integers beyond ±2^53 compare as their
nearest double).

Clocks and expiry
-----------------
G is taken before the event: each worker uses the largest of its own accepted on-time
events and the shared value it last read; the shared key is raised in the next
pipeline (`flush` publishes at once). With one worker this is exactly the contract's G.
With several, a worker's G can lag the others' by one round trip, so forgetting an idle
key can happen one event later than in a single process; values differ only for events
that arrive while another worker is deciding an event that moves G past a key's
horizon.

Idle entities: event-time forgetting is in the script (by G); memory is reclaimed by
TTLs and a sweep. Own keys and buckets get a TTL of ``max(2·(L + Wmax(B)), 10 min)``
of wall clock, refreshed on every write: when event time runs like wall time, a key
untouched for ``L + Wmax(B)`` is forgettable by then anyway, and the factor 2 covers
clock skew and short pauses (a stream stopped for longer than that loses state the
contract would keep: set ``ttl_ms=0`` to rely on forgetting alone). Every write into a
bucket also samples ``sweep`` sibling fields and removes those holding nothing newer
than ``G − L − Wmax(scene)``.

Not here yet: Redis Cluster clients (the layout is ready: every script touches one
slot), and wiring into `Engine` and the service.
"""

from riskengine.state.redis.codec import RedisStateError
from riskengine.state.redis.connect import connect
from riskengine.state.redis.idempotency import RedisDecisionStore
from riskengine.state.redis.store import RedisSceneFeatures

__all__ = ["RedisDecisionStore", "RedisSceneFeatures", "RedisStateError", "connect"]
