"""MLflow model registry URIs (``models:/<name>/<version>``, ``models:/<name>@<alias>``).

Needs the optional extra ``riskengine[mlflow]``; mlflow is imported only here, when a
scene's model (or a version put through the admin API) names such a URI — never while
deciding. The registry is the one MLflow's own settings name (``MLFLOW_TRACKING_URI`` /
``MLFLOW_REGISTRY_URI``: a tracking server, or a SQLite registry ``sqlite:///path.db``;
MLflow's plain file store also needs ``MLFLOW_ALLOW_FILE_STORE=true``). The version's
artifacts are downloaded to a temporary folder and must hold exactly one ``.onnx`` file,
whose bytes are returned.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from riskengine.exceptions import ModelError

__all__ = ["fetch_onnx"]


def fetch_onnx(uri: str, what: str, max_bytes: int) -> bytes:
    """The bytes of the one ``.onnx`` file among the artifacts of registry URI `uri`."""
    try:
        from mlflow.artifacts import download_artifacts
    except ImportError:
        raise ModelError(f"{what}: {uri!r} is an MLflow registry URI; install the extra: "
                         "pip install 'riskengine[mlflow]'") from None
    with tempfile.TemporaryDirectory(prefix="riskengine-model-") as folder:
        try:
            local = Path(download_artifacts(artifact_uri=uri, dst_path=folder))
        except Exception as exc:  # mlflow's own errors: unknown model, registry down, …
            message = " ".join(str(exc).split())[:300]
            raise ModelError(f"{what}: cannot download {uri!r} from the MLflow registry: "
                             f"{message}") from None
        found = [local] if local.is_file() else sorted(local.rglob("*.onnx"))
        if len(found) != 1 or found[0].suffix != ".onnx":
            names = ", ".join(str(p.relative_to(local)) for p in found) or "none"
            raise ModelError(f"{what}: the artifacts of {uri!r} must hold exactly one .onnx "
                             f"file; found {names}")
        if found[0].stat().st_size > max_bytes:
            raise ModelError(f"{what}: the model file of {uri!r} is larger than "
                             f"{max_bytes // 2**20} MiB")
        return found[0].read_bytes()
