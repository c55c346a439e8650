"""Reading a model version: its file (a path or an MLflow URI), its version name, its
session — one `OnnxScorer` per file content in a process, however many engines load it."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from riskengine.exceptions import ModelError
from riskengine.models.onnx import OnnxScorer
from riskengine.models.spec import MLFLOW_SCHEME, ModelSpec

__all__ = ["MAX_MODEL_BYTES", "LoadedModel", "content_version", "load_model"]

MAX_MODEL_BYTES = 256 * 2**20
_SESSIONS_KEPT = 32


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model version ready to score: its spec, version name, scorer, and the sha256 of
    its file (one version name holds one content)."""

    spec: ModelSpec
    version: str
    scorer: OnnxScorer
    digest: str


def content_version(content: bytes) -> str:
    """``"m"`` + 12 hex digits of the file's sha256.

    >>> content_version(b"onnx")
    'm87e93f89f2be'
    """
    return "m" + hashlib.sha256(content).hexdigest()[:12]


def read_model_file(spec: ModelSpec, what: str) -> bytes:
    """The bytes of the model file `spec.uri` names (a path, or an MLflow registry URI)."""
    if spec.uri.startswith(MLFLOW_SCHEME):
        from riskengine.models.mlflow import fetch_onnx

        return fetch_onnx(spec.uri, what, MAX_MODEL_BYTES)
    try:
        with open(spec.uri, "rb") as handle:
            content = handle.read(MAX_MODEL_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"{what}: cannot read {spec.uri!r}: {exc.strerror or exc}") from None
    if len(content) > MAX_MODEL_BYTES:
        raise ModelError(f"{what}: {spec.uri!r} is larger than {MAX_MODEL_BYTES // 2**20} MiB")
    return content


_sessions: dict[tuple[str, int, str], OnnxScorer] = {}
_sessions_lock = threading.Lock()


def load_model(spec: ModelSpec, scene: str) -> LoadedModel:
    """Read and check `spec`'s file; `ModelError` names the scene and model when it cannot
    be read, is not ONNX, or does not fit the inputs and output."""
    what = f"scene {scene!r}: model {spec.name!r} ({spec.uri})"
    content = read_model_file(spec, what)
    digest = hashlib.sha256(content).hexdigest()
    key = (digest, len(spec.inputs), spec.output)
    with _sessions_lock:
        scorer = _sessions.get(key)
    if scorer is None:
        scorer = OnnxScorer(content, len(spec.inputs), spec.output, what)
        with _sessions_lock:
            while len(_sessions) >= _SESSIONS_KEPT:
                del _sessions[next(iter(_sessions))]
            _sessions[key] = scorer
    return LoadedModel(spec, spec.version or content_version(content), scorer, digest)
