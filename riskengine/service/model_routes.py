"""Admin API of model versions: list, put (load, check, make live), activate (rollback).

    GET  /v1/scenes/{scene}/models                               each model, its versions
    PUT  /v1/scenes/{scene}/models/{name}      {"uri", "version"?}  load and make live
    POST /v1/scenes/{scene}/models/{name}/activate/{version}        a kept version live

A version is loaded and checked (readable ONNX, the configured number of inputs, the
configured output) off the event loop; then one assignment makes it live
(riskengine/service/model_registry.py). A refused file answers 422 and the live version
stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Request
from pydantic import BaseModel
from starlette.responses import Response

from riskengine.exceptions import ModelError
from riskengine.service.bodies import JSON, Auth, SceneName, read_json
from riskengine.service.errors import ApiError, documented
from riskengine.service.model_registry import ModelRegistry, ModelVersionConflict
from riskengine.service.runtime import ServiceRuntime

__all__ = ["MAX_MODEL_BODY_BYTES", "add_model_routes"]

MAX_MODEL_BODY_BYTES = 64 * 1024
ModelName = Annotated[str, Path(max_length=100)]
VersionName = Annotated[str, Path(max_length=100)]

MODEL_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["uri"],
    "additionalProperties": False,
    "properties": {
        "uri": {"type": "string", "minLength": 1, "maxLength": 4096,
                "description": "a path to an .onnx file (relative: to the config file's "
                               "folder) or an MLflow URI models:/<name>/<version>"},
        "version": {"type": "string", "maxLength": 64,
                    "description": "the version's name; default: m + 12 hex of the file's "
                                   "sha256"},
    },
    "example": {"uri": "models/fraud_gbm.onnx", "version": "2"},
}


class ModelVersionModel(BaseModel):
    version: str
    uri: str
    sha256: str
    created_at_ms: int
    source: str
    active: bool


class SceneModelModel(BaseModel):
    name: str
    version: str
    uri: str
    inputs: list[str]
    output: str
    versions: list[ModelVersionModel]


class SceneModelsModel(BaseModel):
    scene: str
    models: list[SceneModelModel]


class ModelChangeModel(BaseModel):
    scene: str
    model: str
    version: str
    active: bool
    changed: bool


def add_model_routes(app: FastAPI, rt: ServiceRuntime,
                     admin: Callable[[str | None], None]) -> None:
    """The model routes on `app`, guarded by `admin` (the admin token check)."""
    registry: ModelRegistry = rt.models
    security: dict[str, Any] = {"security": [{"HTTPBearer": []}]}

    def live(scene: str, name: str) -> str:
        try:
            return registry.live(scene, name).version
        except KeyError:
            known = ", ".join(m["name"] for m in registry.describe(scene)) or "none"
            raise ApiError(404, f"scene {scene!r} has no model {name[:100]!r}; its models: "
                                f"{known}", code="unknown_model") from None

    def answer(scene: str, name: str, version: str, changed: bool) -> Response:
        return Response(orjson.dumps({"scene": scene, "model": name, "version": version,
                                      "active": True, "changed": changed}), media_type=JSON)

    @app.get("/v1/scenes/{scene}/models", tags=["models"], response_model=SceneModelsModel,
             responses=documented(401, 403, 404), openapi_extra=security)
    async def list_models(scene: SceneName, authorization: Auth = None) -> Response:
        """Each model of the scene: its live version, uri, inputs, output and the versions
        kept (oldest first, the live one marked)."""
        admin(authorization)
        return Response(orjson.dumps({"scene": scene, "models": registry.describe(scene)}),
                        media_type=JSON)

    @app.put("/v1/scenes/{scene}/models/{name}", tags=["models"],
             response_model=ModelChangeModel,
             responses=documented(400, 401, 403, 404, 409, 413, 415, 422),
             openapi_extra={"requestBody": {"required": True, "content": {
                 JSON: {"schema": MODEL_BODY_SCHEMA}}}, **security})
    async def put_model(request: Request, scene: SceneName, name: ModelName,
                        authorization: Auth = None) -> Response:
        """Load a model file as a version of `name` and put it live at once. A file that
        cannot be read, is not ONNX, or does not take the model's configured inputs answers
        422; a version name that already holds another file, 409. Nothing changes then."""
        admin(authorization)
        live(scene, name)
        body = await read_json(request, MAX_MODEL_BODY_BYTES)
        try:
            model = await asyncio.to_thread(registry.load, scene, name, body)
        except ModelVersionConflict as exc:
            raise ApiError(409, str(exc), code="version_conflict") from None
        except ModelError as exc:
            raise ApiError(422, str(exc), code="invalid_model") from None
        changed = registry.put(scene, model, source="api")
        return answer(scene, name, model.version, changed)

    @app.post("/v1/scenes/{scene}/models/{name}/activate/{version}", tags=["models"],
              response_model=ModelChangeModel, responses=documented(401, 403, 404),
              openapi_extra=security)
    async def activate_model(scene: SceneName, name: ModelName, version: VersionName,
                             authorization: Auth = None) -> Response:
        """Put a kept version live again (rollback)."""
        admin(authorization)
        before = live(scene, name)
        model = registry.activate(scene, name, version)
        if model is None:
            raise ApiError(404, f"model {name!r} of scene {scene!r} has no version "
                                f"{version[:100]!r}", code="unknown_version")
        return answer(scene, name, model.version, before != model.version)
