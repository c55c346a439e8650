"""The ceiling: a bare ASGI app that reads the body and answers constant JSON.

No framework, no parsing, no work, the same answer on every path (so `/readyz` answers
too): what uvicorn (uvloop, httptools) itself costs per request on this machine. Every
service on the same server stays below it.

    uvicorn benchmarks.peers.asgi_ceiling_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

from typing import Any

_BODY = b'{"event_id":"ceiling","decision":"accept"}'
_START = {"type": "http.response.start", "status": 200,
          "headers": [(b"content-type", b"application/json"),
                      (b"content-length", str(len(_BODY)).encode())]}
_ANSWER = {"type": "http.response.body", "body": _BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as every service does
        message = await receive()
        more = message.get("more_body", False)
    await send(_START)
    await send(_ANSWER)
