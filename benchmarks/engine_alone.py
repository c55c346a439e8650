"""Reference row of the replay benchmark: the engine alone on the same events, no files.

Reads the events file into dicts (orjson, untimed), then times `Engine.evaluate` on each
event in file order, with the garbage collector set as the replay sets it, and prints
``{"elapsed_s": ...}`` on stdout: what the replay's loop would cost without reading,
writing and counting.

    python -m benchmarks.engine_alone EVENTS.jsonl CONFIG.yaml
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import orjson

from riskengine.engine import Engine
from riskengine.longlived import BATCH_YOUNG_THRESHOLD, settled_memory

SCENE = "transfer"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m benchmarks.engine_alone EVENTS.jsonl CONFIG.yaml",
              file=sys.stderr)
        return 2
    with open(args[0], "rb") as handle:
        events = [orjson.loads(line) for line in handle if line.strip()]
    engine = Engine.from_config(args[1])
    evaluate = engine.evaluate
    with settled_memory(BATCH_YOUNG_THRESHOLD):
        started = time.perf_counter()
        for event in events:
            evaluate(SCENE, event)
        elapsed = time.perf_counter() - started
    print(json.dumps({"events": len(events), "elapsed_s": elapsed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
