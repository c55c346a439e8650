"""The live comparison of a scene's experiment arms as the service shows it: what
`GET /v1/scenes/{scene}/experiments` answers and the console's experiments page draws.

The counting is `compare_experiments` (riskengine/batch/experiment_report.py, over the
decision log); this adds which experiment version is live now. It reads the log in
chunks: call it off the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from riskengine.batch.experiment_report import compare_experiments
from riskengine.batch.metrics import AMOUNT_FIELD

if TYPE_CHECKING:
    from riskengine.service.runtime import ServiceRuntime

__all__ = ["live_comparison"]


def live_comparison(rt: ServiceRuntime, scene: str, *, since: int | None = None,
                    until: int | None = None, amount_field: str = AMOUNT_FIELD
                    ) -> dict[str, Any]:
    """The comparison of `scene`'s experiment versions over `since <= event time < until`
    (the latest first), with ``live_experiment``: the live version, or None."""
    report = compare_experiments(rt.log, scene, since=since, until=until,
                                 amount_field=amount_field)
    live = rt.experiments.live(scene)
    report["live_experiment"] = None if live is None else live.version
    return report
