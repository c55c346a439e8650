"""``python -m riskengine``: the same command line as the ``riskengine`` script."""

from riskengine.cli import run

if __name__ == "__main__":  # not when a worker process re-imports the main module
    run()
