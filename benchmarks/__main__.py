"""``python -m benchmarks``: riskengine against the seed transcription (see bench_engine)."""

import sys

from benchmarks.bench_engine import main

sys.exit(main())
