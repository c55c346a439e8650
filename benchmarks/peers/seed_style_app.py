"""Peer B: the seed platform's decision endpoint, as its refactor describes it.

Async FastAPI, a Pydantic body, features in Redis behind a Lua script: each request runs
one ``EVALSHA`` that adds the event to the paying account's sorted set (scored by event
time), drops members older than one hour and returns the set's size; the rule
``count > 5`` decides. One Redis round trip per decision, through ``redis.asyncio``.

    RISKBENCH_REDIS_URL=redis://127.0.0.1:PORT/0 \
    uvicorn benchmarks.peers.seed_style_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import BaseModel, Field

WINDOW_MS = 3_600_000
THRESHOLD = 5

# KEYS[1] the account's set; ARGV: event time (ms), event id, window (ms).
# A member exactly one window older than the event is out, as in riskengine.
VELOCITY = """
local ts = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], ts, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ts - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('ZCARD', KEYS[1])
"""


class TransferEvent(BaseModel):
    event_id: str = Field(min_length=1, max_length=256)
    timestamp: int
    pay_account: str
    rcv_account: str
    amount: float


class Decision(BaseModel):
    event_id: str
    decision: str
    score: float
    features: dict[str, int]
    hits: list[str]


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = os.environ.get("RISKBENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = aioredis.Redis.from_url(url, max_connections=64)
    app.state.redis = client
    app.state.velocity = client.register_script(VELOCITY)
    await client.script_load(VELOCITY)  # so the first request already runs EVALSHA
    try:
        yield
    finally:
        await client.aclose()


app = FastAPI(title="seed-style peer", lifespan=lifespan)


@app.post("/v1/transfer/evaluate", response_model=Decision)
async def evaluate(event: TransferEvent) -> Decision:
    count = await app.state.velocity(keys=[f"vel:pay:{event.pay_account}"],
                                     args=[event.timestamp, event.event_id, WINDOW_MS])
    hit = count > THRESHOLD
    return Decision(event_id=event.event_id, decision="reject" if hit else "accept",
                    score=100.0 if hit else 0.0,
                    features={"count(pay_account.history,1h)": count},
                    hits=["velocity"] if hit else [])


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    await app.state.redis.ping()
    return {"status": "ready"}
