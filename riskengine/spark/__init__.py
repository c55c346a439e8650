"""Spark runners: replay, backtest and backfill over history, and a Structured Streaming job,
on the same feature definitions and decision path as the in-process engine
(docs/semantics.md). Needs ``pip install 'riskengine[spark]'``."""
