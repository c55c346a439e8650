"""Model scores in rules: ONNX models run in process, read by ``model("name")``.

- spec.py: the ``models:`` section of a scene (`ModelSpec`, `parse_models`).
- onnx.py: one onnxruntime session per model version (`OnnxScorer`).
- mlflow.py: ``models:/name/version`` URIs from an MLflow registry (extra ``[mlflow]``).
- loading.py: a version read, named (content hash unless given) and checked.
- modelset.py: the live versions of a scene's models, scoring each event (`ModelSet`).
"""

from riskengine.models.loading import LoadedModel, content_version, load_model
from riskengine.models.modelset import ModelSet
from riskengine.models.spec import ModelSpec, parse_model_change, parse_models

__all__ = ["LoadedModel", "ModelSet", "ModelSpec", "content_version", "load_model",
           "parse_model_change", "parse_models"]
