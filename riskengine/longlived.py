"""Keep the garbage collector off long-lived state (`gc.freeze`): the service, and a replay.

The state is millions of long-lived containers without reference cycles; left in the
collected generations, every older-generation collection walks all of them, and a process
pays more for each as the state grows (the service's event loop stops for seconds at a
few hundred thousand events; a replay spends a tenth of its time there). So whatever
survives a generation-1 collection is frozen at once (a `gc.callbacks` hook), and
everything alive is frozen when settling: collections only ever walk what was made since
the last young collection. Cyclic garbage that gets frozen is not reclaimed; the engine
makes none.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BATCH_YOUNG_THRESHOLD", "settle_memory", "settled_memory"]

BATCH_YOUNG_THRESHOLD = 50_000
"""Generation-0 threshold for a batch run such as a replay (`settled_memory(young=...)`):
its per-event objects are freed as it goes, so hardly anything is left to collect; at
the default 700 a replay of the seed workload spent 5 % of its time in collections, 1 %
at this threshold."""


def settle_memory() -> None:
    """Freeze everything alive, and from now on whatever survives a generation-1
    collection (see the module docstring). For a process that holds state until it
    exits: the service."""
    gc.freeze()
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


@contextmanager
def settled_memory(young: int | None = None) -> Iterator[None]:
    """`settle_memory` for the time of a block (a replay); afterwards the frozen objects
    are collectable again and survivors no longer frozen (unless the process had settled
    before). `young` sets the generation-0 threshold meanwhile: a replay that frees what
    it allocates per event is collected a few times instead of hundreds."""
    installed = _freeze_survivors in gc.callbacks
    thresholds = gc.get_threshold()
    settle_memory()
    if young is not None:
        gc.set_threshold(young, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not installed:
            gc.callbacks.remove(_freeze_survivors)
            gc.unfreeze()


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation", 0) >= 1:
        gc.freeze()
