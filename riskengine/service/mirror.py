"""Traffic mirroring: a copy of every answered evaluate request goes to a candidate service.

After the live service has decided a request (single or batch) and its decisions are
committed, the evaluate lane hands the scene, the request body as received and the live
decisions to `Mirror.offer`: one append to the scene's queue, or a drop counted when the
queue is full (`queue` requests or `queue_bytes` bytes waiting, over all scenes).
Background senders post the copies to the candidate (keep-alive, a timeout per request)
and compare its answer with the live decisions (mirror_compare.py). The live answer never
waits for the candidate and never fails because of it: a candidate that is down, slow or
refusing only raises the error and drop counts.

Batching: a sender takes what waits for one scene, in the order the live service answered
it, up to `batch` events and `MAX_BATCH_BYTES` of body, and posts it as ONE request to the
candidate's ``/v1/{scene}/evaluate/batch``. The body is the waiting bodies joined, never
parsed again: ``[`` + single bodies and the inner text of batch bodies, comma-separated, +
``]``. The answer's decisions are compared with the live ones event by event, by position.
A group of one request goes as it was received, to its own path (so ``batch: 1`` sends
every copy on its own, and a request with more than `batch` events goes whole). Scenes
take turns. A candidate that refuses a batch (e.g. 422: one event breaks ITS schema, and
the batch endpoint refuses a batch with one invalid event as a whole) counts every event
of the request as an error with the status; mirror a candidate with a stricter schema
with ``batch: 1``.

What is mirrored: requests the live service answered with 200 (an empty batch has nothing
to compare and is not sent). A request it refuses (400, 401, 413, 415, 422, 503) is not
mirrored. A request that carries the ``x-riskengine-mirrored`` header (every mirrored copy
does) is not mirrored again, so a candidate that mirrors too, or a mirror pointed at
itself, makes no loop.

Events without an ``event_id`` or ``timestamp`` get them from each service on its own
(a generated id, the time of arrival), so send both for exact comparisons. With more
than one sender, requests may reach the candidate in another order than the live
service decided them, which changes the candidate's windowed features.

The senders run on the service's event loop, so each request to the candidate costs the
live service the CPU of one httpx request (``sniffio`` is a dependency for that reason:
without it httpcore retries a failed import, four path searches, on every request);
batching spreads that cost over the events of the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

import httpx
import orjson

from riskengine.decision import Decision
from riskengine.service.metrics import ServiceMetrics
from riskengine.service.mirror_compare import InvalidAnswer, MirrorTally
from riskengine.service.mirror_settings import MirrorSettings
from riskengine.service.settings import MAX_BATCH_BYTES

log = logging.getLogger("riskengine.service.mirror")

MIRRORED_HEADER = b"x-riskengine-mirrored"
_Copy = tuple[bytes, Sequence[Decision], bool]
"""A waiting copy: the body as received, the live decisions, whether it is a batch."""


class Mirror:
    """The queues, the senders and the tally of one service process."""

    def __init__(self, settings: MirrorSettings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.tally = MirrorTally(metrics, settings.samples)
        self.requests_sent = 0
        self._waiting: dict[str, deque[_Copy]] = {}  # per scene, in live order
        # the scenes with copies waiting, each once, in turn
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._requests_left = settings.queue  # the copies waiting hold the rest
        self._bytes_left = settings.queue_bytes
        metrics.mirror_queue.set_function(lambda: self.depth)
        self._batch = settings.batch
        self._tolerance = settings.score_tolerance
        self._client: httpx.AsyncClient | None = None
        self._senders: list[asyncio.Task[None]] = []
        headers = {"content-type": "application/json", MIRRORED_HEADER.decode(): "1"}
        if settings.token is not None:
            headers["authorization"] = f"Bearer {settings.token}"
        self._headers = headers

    @property
    def depth(self) -> int:
        """Requests waiting, over all scenes."""
        return self.settings.queue - self._requests_left

    def offer(self, scene: str, body: bytes, live: Sequence[Decision], batch: bool) -> None:
        """Queue a copy of a request answered for `scene`; counts its events as dropped
        when the queue is full (in requests or in bytes)."""
        if not live:
            return  # an empty batch: nothing to compare
        size = len(body)
        if size > self._bytes_left or not self._requests_left:
            self.tally.count("dropped", len(live))
            return
        self._bytes_left -= size
        self._requests_left -= 1
        waiting = self._waiting.get(scene)
        if waiting is None:
            waiting = self._waiting[scene] = deque()
        if not waiting:
            self._ready.put_nowait(scene)
        waiting.append((body, live, batch))

    def _take(self, scene: str) -> list[_Copy]:
        """The copies of `scene` that go in one request: the oldest, then the next ones
        while the events stay within `batch` and the body within `MAX_BATCH_BYTES`."""
        waiting = self._waiting[scene]
        first = waiting.popleft()
        group = [first]
        events, size = len(first[1]), len(first[0]) + 2
        while waiting:
            body, live, _ = waiting[0]
            events += len(live)
            size += len(body) + 1
            if events > self._batch or size > MAX_BATCH_BYTES:
                break
            group.append(waiting.popleft())
        if waiting:
            self._ready.put_nowait(scene)  # its turn again after the other scenes'
        self._requests_left += len(group)
        self._bytes_left += sum(len(body) for body, _, _ in group)
        return group

    async def start(self) -> None:
        """Open the client and start the senders (on the service's event loop)."""
        n = self.settings.senders
        self._client = httpx.AsyncClient(
            base_url=self.settings.url, headers=self._headers,
            timeout=httpx.Timeout(self.settings.timeout_s),
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            follow_redirects=False)
        self._senders = [asyncio.create_task(self._send_loop(self._client))
                         for _ in range(n)]

    async def close(self) -> None:
        """Stop the senders; what is still queued or in flight counts as dropped."""
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self._senders = []
        while not self._ready.empty():
            for _, live, _ in self._take(self._ready.get_nowait()):
                self.tally.count("dropped", len(live))
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send_loop(self, client: httpx.AsyncClient) -> None:
        while True:
            scene = await self._ready.get()
            path, body, live, batch = request_of(scene, self._take(scene))
            try:
                await self._send(client, path, body, live, batch)
            except asyncio.CancelledError:
                self.tally.count("dropped", len(live))
                raise
            except Exception:
                # a sender that died would silently stop the mirror: count and go on
                log.exception("mirror: comparing the answer for %s failed", path)
                self.tally.error("failed", len(live))

    async def _send(self, client: httpx.AsyncClient, path: str, body: bytes,
                    live: Sequence[Decision], batch: bool) -> None:
        self.requests_sent += 1
        try:
            response = await client.post(path, content=body)
        except httpx.TimeoutException:
            self.tally.error("timeout", len(live))
            return
        except httpx.ConnectError:
            self.tally.error("connect", len(live))
            return
        except httpx.HTTPError as exc:
            log.debug("mirror: %s to the candidate failed: %s", path, exc)
            self.tally.error("transport", len(live))
            return
        if response.status_code != 200:
            self.tally.error(f"status {response.status_code}", len(live))
            return
        try:
            answer = orjson.loads(response.content)
            if batch and not isinstance(answer, list):
                raise InvalidAnswer("a batch answer is a JSON list")
            self.tally.answered(live, answer if batch else (answer,), self._tolerance)
        except (orjson.JSONDecodeError, InvalidAnswer) as exc:
            log.debug("mirror: the candidate's answer for %s is unusable: %s", path, exc)
            self.tally.error("invalid answer", len(live))

    def to_dict(self) -> dict[str, object]:
        """The admin view: settings, queue, requests sent, counts, errors and samples."""
        return {"enabled": True, **self.settings.to_dict(), "queue_depth": self.depth,
                "requests_sent": self.requests_sent, **self.tally.to_dict()}


def request_of(scene: str, group: Sequence[_Copy]
               ) -> tuple[str, bytes, Sequence[Decision], bool]:
    """The path, body, live decisions and batch flag of the one request that carries
    `group` (copies of `scene`, in live order): a single copy as it was received, more
    as one batch, their bodies spliced into one JSON list."""
    if len(group) == 1:
        body, live, batch = group[0]
        return (f"/v1/{scene}/evaluate/batch" if batch else f"/v1/{scene}/evaluate",
                body, live, batch)
    parts: list[bytes] = []
    decisions: list[Decision] = []
    for body, live, batch in group:
        # a batch body is a JSON list (the live service parsed it): its inner text
        parts.append(body.strip()[1:-1] if batch else body)
        decisions.extend(live)
    return f"/v1/{scene}/evaluate/batch", b"[" + b",".join(parts) + b"]", decisions, True
