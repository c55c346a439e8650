"""Watch the config file and put changed rulesets and lists live.

The folder is watched (editors save by writing a new file and renaming it over the old
one), changes are debounced for 100 ms, the file is parsed and compiled off the event loop,
and the new rulesets are installed on the loop's thread: one attribute assignment each.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from watchfiles import awatch

from riskengine.service.runtime import ServiceRuntime

log = logging.getLogger("riskengine.service")


async def watch_config(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    path = runtime.settings.config
    if path is None:
        return
    target = Path(path).resolve()
    async for changes in awatch(target.parent, stop_event=stop, debounce=100, step=20,
                                recursive=False):
        if not any(Path(p).resolve() == target for _, p in changes):
            continue
        try:
            changed = await asyncio.to_thread(runtime.reload_config)
        except Exception:  # a bug must not stop the watching: the live rules stay
            log.exception("config reload failed; the live rules stay")
            continue
        if changed:
            log.info("config reloaded: %s", ", ".join(changed))
