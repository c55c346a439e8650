"""Peer of the replay benchmark: the seed's algorithm over a JSON Lines file.

Reads the events file a line at a time, parses each line with orjson, runs it through the
seed transcription (`benchmarks.seed_transcription.SeedPipeline`: split into shadows, the
last 100 shadows per key, features by rescanning, join, rule), and writes one JSON object
per event — ``{"event_id", "timestamp", "features", "isAnomaly"}`` — with orjson, 1,024
lines per write: the way `riskengine replay` reads and writes its files, minus the checks
that make its files exactly the json module's. Like the replay, it keeps the garbage
collector off the long-lived state as the replay does
(`riskengine.longlived.settled_memory`, `BATCH_YOUNG_THRESHOLD`).

    python -m benchmarks.peers.seed_jsonl EVENTS.jsonl OUTPUT.jsonl
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import orjson

from benchmarks.seed_transcription import SeedPipeline
from riskengine.longlived import BATCH_YOUNG_THRESHOLD, settled_memory

BLOCK_LINES = 1_024


def replay(source: str, output: str) -> int:
    """Run every event of `source` through the seed pipeline; returns the events written."""
    process = SeedPipeline().process
    loads, dumps, newline = orjson.loads, orjson.dumps, orjson.OPT_APPEND_NEWLINE
    written = 0
    with open(source, "rb") as events, open(output, "wb") as out:
        lines: list[bytes] = []
        for line in events:
            if not line.strip():
                continue
            result = process(loads(line))
            if result is None:
                continue
            event = result["event"]
            lines.append(dumps({"event_id": event["EVENT_ID"], "timestamp": event["timestamp"],
                                "features": result["features"],
                                "isAnomaly": result["isAnomaly"]}, option=newline))
            if len(lines) >= BLOCK_LINES:
                out.write(b"".join(lines))
                written += len(lines)
                lines.clear()
        out.write(b"".join(lines))
        written += len(lines)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m benchmarks.peers.seed_jsonl EVENTS.jsonl OUTPUT.jsonl",
              file=sys.stderr)
        return 2
    with settled_memory(BATCH_YOUNG_THRESHOLD):
        written = replay(args[0], args[1])
    print(f"{written} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
