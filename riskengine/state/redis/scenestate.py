"""One scene's state in Redis as a whole: does it hold any, and deleting it.

For a backfill, which must not mix history into a scene's live state and which replaces
it on request. The scene's state is (riskengine/state/redis/__init__.py, Key layout):
its entity and pattern keys ``<prefix>:{<scene>|…``, its idempotency records
``<prefix>:id:{<scene>|…}``, and its fields of the clock key — ``G:<scene>``, the
partition clocks ``G:<scene>|<partition>`` and the marker ``P:<scene>``. The LSN counter
is every scene's and stays (LSNs never go back); so does ``<prefix>:names:{<scene>}``,
which only names the feature lists that records refer to.

Operator tools, not per event: both SCAN every primary.
"""

from __future__ import annotations

import re

from riskengine.state.redis.functions import Client

__all__ = ["clear_scene", "scene_holdings"]

_DELETE_BATCH = 500
_GLOB_SPECIALS = re.compile(r"([\\*?\[\]])")


def _patterns(scene: str, prefix: str) -> tuple[str, str]:
    name = _GLOB_SPECIALS.sub(r"\\\1", scene)
    return f"{prefix}:{{{name}|*", f"{prefix}:id:{{{name}|*"


def _clock_fields(client: Client, scene: str, prefix: str) -> list[bytes]:
    own = (f"G:{scene}".encode(), f"P:{scene}".encode())
    partitions = f"G:{scene}|".encode()
    names = [n if isinstance(n, bytes) else n.encode()  # replies stay bytes (connect)
             for n in client.hkeys(f"{prefix}:{{clock}}")]
    return [name for name in names if name in own or name.startswith(partitions)]


def scene_holdings(client: Client, scene: str, prefix: str = "re") -> list[str]:
    """What state the scene has in Redis, in words (empty: none): its clocks, and whether
    any of its keys exist (the first one found is enough)."""
    found: list[str] = []
    fields = _clock_fields(client, scene, prefix)
    if fields:
        found.append(f"its scene clock in {prefix}:{{clock}} "
                     f"({', '.join(f.decode(errors='replace') for f in fields)})")
    for pattern, what in zip(_patterns(scene, prefix), ("feature or pattern keys",
                                                        "remembered event ids"), strict=True):
        if next(iter(client.scan_iter(match=pattern, count=1000)), None) is not None:
            found.append(f"{what} ({pattern})")
    return found


def clear_scene(client: Client, scene: str, prefix: str = "re") -> int:
    """Delete the scene's state (module docstring); returns how many keys went."""
    fields = _clock_fields(client, scene, prefix)
    if fields:
        client.hdel(f"{prefix}:{{clock}}", *fields)
    deleted = 0
    for pattern in _patterns(scene, prefix):
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= _DELETE_BATCH:
                deleted += _unlink(client, batch)
                batch = []
        deleted += _unlink(client, batch)
    return deleted


def _unlink(client: Client, keys: list[bytes]) -> int:
    """One UNLINK per key in one pipeline (keys of a cluster are on many slots)."""
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(int(n) for n in pipe.execute())
