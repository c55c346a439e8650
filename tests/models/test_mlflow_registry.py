"""Models from an MLflow registry: a SQLite registry made in a temporary folder.

Slow-ish (MLflow creates its database schema, a few seconds), so one registry serves the
module.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskengine import Engine
from riskengine.exceptions import ModelError
from riskengine.models import content_version
from tests.models.onnx_files import logistic, sigmoid

T0 = 1_767_571_200_000

# MLflow's SQL store uses a loader strategy SQLAlchemy 2.1 deprecates: theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Registered: risk/1 (one .onnx file), risk/2 (two .onnx files: ambiguous)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'registry.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = uri
    try:
        files = {"one": folder / "one", "two": folder / "two"}
        for sub in files.values():
            sub.mkdir()
        model = logistic(files["one"] / "model.onnx", [0.5])
        shutil.copy(model, files["two"] / "a.onnx")
        shutil.copy(model, files["two"] / "b.onnx")
        client = MlflowClient(uri, uri)
        experiment = client.create_experiment(
            "models", artifact_location=(folder / "artifacts").as_uri())
        client.create_registered_model("risk")
        for sub in files.values():
            run = client.create_run(experiment)
            client.log_artifacts(run.info.run_id, str(sub), artifact_path="model")
            client.set_terminated(run.info.run_id)
            client.create_model_version("risk", f"{run.info.artifact_uri}/model",
                                        run_id=run.info.run_id)
        assert mlflow is not None
        yield {"model": model}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def config(uri: str) -> dict[str, Any]:
    return {"scenes": {"pay": {
        "schema": {"acct": "str", "amount": "float"},
        "features": [{"name": "n_1h", "func": "count", "by": ["acct"], "window": "1h"}],
        "models": {"risk": {"uri": uri, "inputs": ["amount"]}},
        "rules": [], "policy": {}}}}


def test_a_registry_version_scores_as_its_file(registry: dict[str, Path]) -> None:
    engine = Engine.from_config(config("models:/risk/1"))
    decision = engine.evaluate("pay", {"event_id": "e1", "timestamp": T0, "acct": "A",
                                       "amount": 2.0})
    assert decision.features["model:risk"] == pytest.approx(sigmoid(1.0))
    assert decision.models == {"risk": content_version(registry["model"].read_bytes())}


def test_an_unknown_registry_version_is_a_load_error(registry: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match=r"model .risk.*cannot download .models:/risk/9."):
        Engine.from_config(config("models:/risk/9"))


def test_a_version_with_two_onnx_files_is_a_load_error(registry: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match=r"exactly one \.onnx file; found a\.onnx, b\.onnx"):
        Engine.from_config(config("models:/risk/2"))
