"""riskengine: a real-time risk-control decision engine with exact windowed features."""

from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError

__all__ = ["Decision", "Engine", "RiskEngineError", "__version__"]
__version__ = "0.1.0"
