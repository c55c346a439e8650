"""Scene features with their state in Redis: many workers, one truth (docs/semantics.md).

`RedisSceneFeatures(client, scene_config).compute(event)` returns the features and the late
flag the in-memory `SceneFeatures.compute` gives for the same events in the same order;
`RedisState` (riskengine/state/redis/backend.py), an engine's state backend, is the
whole decision path on it, and
tests/redis/ checks it event by event against tests/oracle.py, on one server and on a
3-primary Redis Cluster, with one worker and with two taking turns. `RedisDecisionStore`
remembers decisions by event id; `SharedClock` (clock.py) keeps the LSN counter and the
scene clocks. Needs Redis 7.0 or later (Redis Functions).

Connecting
----------
`connect(url)` makes the client a state URL names (`riskengine.state.redis.connect`):

``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS), ``unix:///path?db=N``
    one server (`redis.Redis.from_url`);
``redis+cluster://[[user]:password@]host:port[,host:port…]``, ``rediss+cluster://…``
    a Redis Cluster, found through any of the listed nodes (`redis.cluster.RedisCluster`
    learns the others and the slot map from them); database 0 only.

Replies stay bytes (`decode_responses` is refused). Client options (timeouts, pool
size) are keyword arguments of `connect`, not URL parameters, for clusters.

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
    entities / 50. The count is fixed when the state is created (``?buckets=N`` on the
    state URL, 4096 by default) and recorded in the clock key's ``format``; later
    processes take it, and one given another count is refused (`SharedClock`).
``re:{<scene>|<B>|<bucket>}:<sig>:<key value>``  (hash) and
``re:{<scene>|<B>|<bucket>}:<sig>:e:<key value>``  (sorted set)
    the entity's *own keys*, where it lives once its blob outgrows a bucket field (a
    *paged*, busy entity): its entries in the sorted set, one member each (score: the
    entry's time; member: its arrival number at the entity in 5 big-endian bytes, so
    that entries of one time sort by arrival, then msgpack of its mask and slots); the
    rest in the hash: field ``h`` its header (the blob below without the entries, plus
    the next arrival number), fields ``d<group>.<window>.<item>|<distinct key>`` the
    counts of its running distinct sets, ``x…``, ``m…`` and ``t…`` its min/max spans,
    what its min/max windows keep of them, and its closed tiles (below, Values). An
    event adds one member, rewrites the header and the counts it changed, and now and
    then removes the entries no event can read
    (once they are an eighth of the set, or `page_entries`, with one
    ``ZREMRANGEBYSCORE``): what it writes does not grow with the entity. A call reads
    the header and only the entries it needs (by rank, `page_entries` at a time; the
    index of a time is a ``ZCOUNT``). It goes back to its bucket once it holds at most
    `page_entries` (16) entries and fits in three quarters of a field. (A key value
    text never starts with ``e``, so the two names cannot meet.)
``re:{clock}``  (hash)
    the clock key, one for every scene of the prefix (`riskengine.state.redis.clock`):
    ``format`` (the layout of the state, ``4``, or ``4/b<n>`` with n buckets per key
    set other than 4096), ``lsn`` (the last LSN handed out) and
    ``G:<scene>`` (the scene clock G: the largest time of the scene's accepted events
    that were not late), and ``G:<scene>|<topic>#<partition>`` for each partition a
    stream worker reads (a clock each). Every event takes one *clock step* on it
    (below); keys are trimmed, forgotten and swept by the slowest of the scene's clocks.
``re:id:{<scene>|<event id>}``
    an idempotency record, ``<t>|<decision record>`` (`RedisDecisionStore`; the compact
    record of `riskengine.state.redis.records`).
``re:{<scene>|pattern|<name>|<key text>}``
    one key of one sequence pattern: msgpack of its newest time, arrival counter, held
    events or open deadlines, and a guard of its last two events
    (`riskengine.state.redis.patterns`).
``re:names:{<scene>}``
    hash: feature-names tag → the JSON list of the scene's feature names (records name
    their list by tag).

The key value text is Python-equality canonical (``1``, ``1.0`` and ``True`` are one key;
strings are prefixed with ``'``), JSON for composite keys, a digest beyond 120 characters.

The entity blob
---------------
``msgpack(header) + msgpack([header − base, entries, tiles, guard, running])``:
``header`` is the newest time the entity holds (what the sweep reads); ``entries`` is
one flat array, per stored event ``t − base``, its group mask (only when B has several
groups of features, i.e. different `where` filters, kinds or hops), and its *slots*
(`codec`, `plan.Slot`): per target field, its micro-units ``q(v)`` when sum, avg or
stddev read it (a number; decimal text when ``|q| ≥ 2^52``), and its value text
``R(v)``, the value as it came in, when min, max, first, last or count_distinct read it
(followed by the distinct key when count_distinct reads it and the key differs from
``R``): a field only summed stores no text, one only compared no micro-units; ``tiles``
holds per tiled group one partial aggregate per tile ``floor(t/H)``; ``guard`` holds the
last `guard_depth` events (6-byte id digest, time, late flag, their values); ``running``
(busy entities only) holds per history window a running state, below. Entries are sorted
by (time, arrival): LSN order while one event is in flight at a time. A paged entity's
header is the same array with ``false`` for entries, then its next arrival number.

Memory: an entry costs its time offset (1–5 bytes), its mask (0–1) and its slots
(micro-units: a msgpack integer, 5 bytes for amounts below 4,294.97, 9 above; a value
text: a type byte and the text, ``'acct-42``, ``1234.5``), 10–20 bytes; a field read
both ways holds both. An entity in a bucket adds its field name, the blob header and its
guard record (about 45 bytes with the seed's three features); a paged entity adds two
Redis keys (~200 bytes), per entry its member (5 bytes and its slots) and score, about
35–40 bytes while its sorted set is listpack-encoded (up to ``zset-max-listpack-entries``
members, 128 by default; a larger setting keeps busy entities compact at the cost of a
longer insertion) and 120–130 bytes beyond (a skiplist), and per distinct value its
running count field. Measured with the seed's three features, `hash-max-listpack-value
256` (bytes freed by deleting the state, INFO used_memory, which leaves out the Lua VMs;
MEMORY USAGE of the keys agrees within 40 %), Redis 7.0: a steady stream of 440 active
accounts holds 17.6–21.9 bytes per retained entry, 42–52 per event inside the horizon
(tests/redis/test_redis_memory.py; its 40 busy receivers hold ~155 entries each, in
skiplists). INFO `used_memory` deltas across a run also count Redis's per-command
latency histograms and client buffers, so they are not a measure of the state.

The clock step
--------------
Every event takes a clock step, the ``clock`` function: atomically, the next LSN
(``HINCRBY``), G before the event, whether the event is late (``t < G − L``), and G
raised to t when it is not late. The LSN and G are taken in one step, so LSN order is
the order in which G was taken: LSNs are one arrival order across every process, and a
replay of the decision log in LSN order finds every event's G and late flag again. On
one server the step is part of the event's one call (below), after its idempotency
lookup: a duplicate found there takes no step at all. On a cluster the step goes in the
pipeline of the event's idempotency lookup (``recall``, a GET, on another node); a
duplicate found there changes nothing (its LSN is a gap) and, if its step raised G
(only a duplicate carrying a later time than its first decision can: the first was on
time, so G is at or past its time, or late, so its time is below G − L), ``unclock``
puts G back unless another event moved it since. The step writes ``format`` when it is
missing, and answers an error, changing nothing, when it holds another one than the
caller's (the state was emptied and made again by a process of another bucket count: the
caller checks again). A clock key without it or of another format, or the keys of the
older per-key layout (``re:lsn``, ``re:{<scene>}:G``), are refused at start
(`StateFormatError`, naming what to delete).

One call per entity
-------------------
The scene's plans and riskengine/state/redis/scripts/entity.lua make one Redis Functions
library, named after the digest of its code (``riskengine_<digest>``: a changed config
loads a new one beside the old; `FUNCTION DELETE` the libraries of configs no longer
deployed). `FUNCTION LOAD` puts it on the server (every primary of a cluster) when
`RedisSceneFeatures` starts; each function builds its plan's tables and closures at its
first call, once per server, so a call only executes. Functions survive SCRIPT FLUSH and
restarts with persistence, and replicate; a node that answers "Function not found"
(flushed, or new in the cluster) gets the library again and only the calls it refused
are sent again.

One function per `EntityPlan` (``e<n>``) gets the event's t, G and late flag from its clock step
(no entity decides lateness, so an event is late on all its keys or on none) and does
atomically: the idempotency guard (this event id already applied within the horizon →
the stored answer, its late flag included, nothing changes); forgetting (the stored
events go when ``maxts ≤ G − L − Rmax(B)``, Rmax the largest reach of B's features: W,
or W + H tiled); trimming what no event can read (history entries ``≤ maxts − L − W``
of their group, tiles before ``floor((maxts − L − W)/H)``, raw entries of tiles before
``floor((maxts − L)/H)``: an event that is not late has ``t ≥ G − L ≥ maxts − L``, a
late one reads above ``G − L − W``); every feature value of the entity (a late event's
above the floor ``G − L − W``, tiled by whole tiles from ``floor((G − L − W)/H)``);
storing the event (unless late or filtered out); and the guard record. Every entity of
an event is one FCALL, all in one pipeline with the event's sequence-pattern calls, on
a cluster. On one server the ``event`` function runs the whole step of an event in one
atomic call: the idempotency lookup (a live record is the answer, nothing changes), the
clock step, then every entity's function and every pattern call with the step's G and
late flag (the functions of the library call each other: ``event`` shares the entity
functions' closures).

Values: tiled windows by whole tiles plus the raw entries of the event's own tile (whole
tiles only when the event is late); a group of counts and sums only (``sum``, ``avg``,
``stddev``, ``count``) takes its own tile whole less its entries later than t, so a busy
tile is not scanned. A paged entity keeps such a group's *closed* tiles (below
``floor((m − L)/H)``, m its newest time or the slowest clock if lower: no event that is
not late can be stored there any more) as hash fields ``t<group>|<tile>`` and, per
window, a running sum of its closed tiles, moved a tile at a time as the window passes
them: its header holds only the open tiles and those sums, and a call reads a tile or
two. (A tiled group with ``count_distinct``, ``min``, ``max``, ``first`` or ``last``
keeps every tile in the header, and merges them on every event: its writes and reads
grow with W/H.) History windows of small entities by one backward
scan over the entries. Entities holding `running_from` (32) entries or more keep, per
history window, a *running state* of the entries later than a bound B: their count,
exact sums (micro-units and squares) and distinct counts (a count per distinct key).
The value for an event at t over ``(t − W, t]`` is that state, plus the entries in
``(t − W, B]``, minus the entries later than t, plus the event; B then rises to
``t − W`` (and, when trimming, to ``maxts − L − W``), taking out the entries it passes.
Each entry goes in and out of a state once, so a busy key costs about the same as a
quiet one instead of a pass over its window. ``first``/``last`` read the window's edges.
``min``/``max`` of a paged entity use *spans*: per window W and item, the extreme entry
(time, arrival, value text) of each span of ``W/64`` of time is a hash field
``x<group>.<window>.<item>|<span>``, updated when a stored event beats it and dropped
as the window passes. A window's edges cross a span boundary once every ``W/64`` of
the entity's time, so what an event reads is kept in one field
``m<group>.<window>.<item>`` and read whole: the extreme of the spans strictly between
the edge spans (mended when an entry lands in one of them), and the *candidates* of the
start span (its entries that beat every later entry of the span, in time order: the
extreme of the part of the span inside the window is the first candidate later than
``t − W``). The top span's field gives the top edge when no entry is later than the
event; otherwise that span's entries up to the event are scanned. The field is computed
again, from the spans (one ``HMGET``) and the start span's entries, when the edges move,
and its candidates go when an entry lands in the start span (a window shorter than the
lateness). Ties go to the earlier time and arrival throughout. An in-order event thus
reads two fields per window instead of ``2N/64`` entries and 64 fields. The header
carries a mark of this layout; an entity whose header lacks it (written by a version
that did not keep these fields) drops them and computes them again. Late events (rare)
scan. A window holding fewer entries than the corrections is scanned instead. All of it
is exact: the oracle tests run with running states from the first entry, from the
default size, and never.

Exact sums: micro-units ``q(v) = round(v·1e6)`` are integers, computed in Python only
(`riskengine.features.aggregators.quantize`, the definition the in-memory engine uses);
the script never rounds. It keeps ``q`` as a number when ``|q| < 2^52`` and as its
decimal text beyond (values from about 4.5·10^9 on). Sums are kept in doubles below
2^52, where every addition and subtraction is exact, and spill into base-10^4 limbs
beyond; squares are summed as ``qa², qa·qb, qb²`` with ``q = qa·2^26 + qb``. Python
rebuilds the integers and applies the contract's formulas (``S / 1e6``,
``sqrt(k·S2 − S²) / (k·1e6)``). ``min``/``max`` compare numbers as doubles (integers
beyond ±2^53 compare as their nearest double).

Redis Cluster
-------------
There the ``event`` function is not used: its keys span slots. Every call touches the
keys of one entity, which share a hash tag, so every call is on one slot and needs no
cross-slot atomicity; the clock key is one slot (``{clock}``) for every scene, and an
event's clock step goes to its node in parallel with its idempotency lookup. In a
batch, each call goes to the primary of its first key's slot (routed by the client from
the key, not by asking the server for an FCALL's keys), the commands for every node are
written before any reply is read (redis-py's cluster pipeline), so a batch still costs
about one round trip; MOVED/ASK during a resharding are followed by the client.
`state_keys` and `stats` scan every primary.

Clocks and expiry
-----------------
G is the contract's G exactly, in LSN order, whichever worker decides: the clock step
reads and raises it in Redis, no worker keeps a copy. With one request in flight at a
time, any number of workers give the in-memory engine's answers, run after run, on one
server or a cluster. Under concurrent requests every event's G and late flag are those
of a replay in LSN order; events of one entity in flight at once are applied at the
entity in the order their calls reach it.

Idle entities: event-time forgetting is in the script (by G); memory is reclaimed by
TTLs and a sweep. Own keys and buckets keep a TTL of at least ``T = max(2·(L +
Rmax(B)), 1 day)`` of wall clock after their last write: a write that finds less than T
left sets it to 2·T, others leave it (a refresh on every write would put a
``PEXPIREAT`` in the AOF each time), so a key lives between T and 2·T after its last
write. When event time runs like wall time, a key
untouched for ``L + Rmax(B)`` is forgettable by then anyway; the TTL is a safety net for
keys nothing touches any more, far beyond that. A stream whose event time stops for
longer than the TTL less the horizon (an outage of a day, then its backlog) would lose
state the contract keeps: give such a deployment a longer ``ttl_ms``, or 0 to rely on
forgetting alone. Every write also
samples ``sweep`` fields of the entity's bucket and removes those holding nothing newer
than ``G − L − max(Rmax(B), Wmax(scene))`` (no on-time event reads them, no retry within
the idempotency horizon needs their guard record).

Connections: on one server a batch is written and read on one pooled connection; when
that connection fails, the batch is sent once more on a new one (the entity guard
answers a call that had run from its record, the clock step is taken again: an LSN gap;
with ``guard_depth=0`` the error is raised instead).
"""

from riskengine.state.redis.backend import RedisState
from riskengine.state.redis.codec import RedisStateError
from riskengine.state.redis.connect import connect
from riskengine.state.redis.idempotency import RedisDecisionStore
from riskengine.state.redis.store import RedisSceneFeatures

__all__ = ["RedisDecisionStore", "RedisSceneFeatures", "RedisState", "RedisStateError",
           "connect"]
