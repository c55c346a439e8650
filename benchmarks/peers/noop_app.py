"""Peer A: a FastAPI endpoint that validates a transfer with Pydantic and does nothing else.

What one uvicorn worker (uvloop, httptools) costs per request before any decision is
made: the floor under every FastAPI decision service.

    uvicorn benchmarks.peers.noop_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, Field


class TransferEvent(BaseModel):
    """The transfer fields of the benchmark's events."""

    event_id: str = Field(min_length=1, max_length=256)
    timestamp: int
    pay_account: str
    rcv_account: str
    amount: float


app = FastAPI(title="no-op peer")


@app.post("/v1/transfer/evaluate")
async def evaluate(event: TransferEvent) -> dict[str, str]:
    return {"event_id": event.event_id, "decision": "accept"}


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
