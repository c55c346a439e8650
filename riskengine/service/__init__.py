"""The HTTP decision service: FastAPI over one in-process `Engine`.

`create_app(settings)` builds the ASGI app; `riskengine serve` runs it on uvicorn. The
service adds transport, persistence (decision log, snapshots, ruleset versions, list
changes), security and metrics; every feature and rule is computed by `Engine`.
"""

from riskengine.service.app import create_app
from riskengine.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
