"""Request parameters the routes of several modules share (FastAPI annotations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path

Auth = Annotated[str | None, Header(alias="Authorization", include_in_schema=False)]
SceneName = Annotated[str, Path(max_length=200)]
