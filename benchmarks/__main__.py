"""``python -m benchmarks``: riskengine against the seed transcription (see bench_engine);
``python -m benchmarks replay [...]``: the replay end to end (see bench_replay)."""

import sys

if sys.argv[1:2] == ["replay"]:
    from benchmarks.bench_replay import main as replay_main

    sys.exit(replay_main(sys.argv[2:]))

from benchmarks.bench_engine import main

sys.exit(main())
