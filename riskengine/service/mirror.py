"""Traffic mirroring: a copy of every answered evaluate request goes to a candidate service.

After the live service has decided a request (single or batch) and its decisions are
committed, the evaluate lane hands the request body, as received, and the live decisions
to `Mirror.offer`: one `put_nowait` on a bounded queue, or a drop counted when it is full.
Background senders post each body to the same path on the candidate (keep-alive, a
timeout per request) and compare its answer with the live decisions (mirror_compare.py).
The live answer never waits for the candidate and never fails because of it: a candidate
that is down, slow or refusing only raises the error and drop counts.

What is mirrored: requests the live service answered with 200. A request it refuses
(400, 401, 413, 415, 422, 503) is not mirrored. A request that carries the
``x-riskengine-mirrored`` header (every mirrored copy does) is not mirrored again, so a
candidate that mirrors too, or a mirror pointed at itself, makes no loop.

Events without an ``event_id`` or ``timestamp`` get them from each service on its own
(a generated id, the time of arrival), so send both for exact comparisons. With more
than one sender, requests may reach the candidate in another order than the live
service decided them, which changes the candidate's windowed features.

The senders run on the service's event loop, so each copy costs the live service the CPU
of one httpx request (``sniffio`` is a dependency for that reason: without it httpcore
retries a failed import, four path searches, on every request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
import orjson

from riskengine.decision import Decision
from riskengine.service.metrics import ServiceMetrics
from riskengine.service.mirror_compare import InvalidAnswer, MirrorTally
from riskengine.service.mirror_settings import MirrorSettings

log = logging.getLogger("riskengine.service.mirror")

MIRRORED_HEADER = b"x-riskengine-mirrored"
_Item = tuple[str, bytes, Sequence[Decision], bool]


class Mirror:
    """The queue, the senders and the tally of one service process."""

    def __init__(self, settings: MirrorSettings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.tally = MirrorTally(metrics, settings.samples)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(settings.queue)
        metrics.mirror_queue.set_function(self._queue.qsize)
        self._tolerance = settings.score_tolerance
        self._bytes_left = settings.queue_bytes  # the bodies waiting hold the rest
        self._client: httpx.AsyncClient | None = None
        self._senders: list[asyncio.Task[None]] = []
        headers = {"content-type": "application/json", MIRRORED_HEADER.decode(): "1"}
        if settings.token is not None:
            headers["authorization"] = f"Bearer {settings.token}"
        self._headers = headers

    @property
    def depth(self) -> int:
        """Requests waiting in the queue."""
        return self._queue.qsize()

    def offer(self, path: str, body: bytes, live: Sequence[Decision], batch: bool) -> None:
        """Queue a copy of an answered request; counts its events as dropped when the
        queue is full (in requests or in bytes)."""
        size = len(body)
        if size > self._bytes_left or self._queue.full():
            self.tally.count("dropped", len(live))
            return
        self._bytes_left -= size
        self._queue.put_nowait((path, body, live, batch))

    def _taken(self, item: _Item) -> _Item:
        """`item` is out of the queue: its body's bytes are free again."""
        self._bytes_left += len(item[1])
        return item

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
        while not self._queue.empty():
            self.tally.count("dropped", len(self._taken(self._queue.get_nowait())[2]))
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send_loop(self, client: httpx.AsyncClient) -> None:
        while True:
            path, body, live, batch = self._taken(await self._queue.get())
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
        """The admin view: settings, queue, counts, errors and samples."""
        return {"enabled": True, **self.settings.to_dict(),
                "queue_depth": self.depth, **self.tally.to_dict()}
