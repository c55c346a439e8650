"""``python -m riskengine``: the same command line as the ``riskengine`` script."""

from riskengine.cli import run

run()
