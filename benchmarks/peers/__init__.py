"""Peer services for the HTTP benchmark (``benchmarks.bench_service``).

- ``noop_app``: FastAPI with a Pydantic body and no work at all, the framework's floor.
- ``seed_style_app``: the seed platform's design, a Pydantic body and one Redis Lua
  velocity check per request.
"""
