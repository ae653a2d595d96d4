"""Serialise a response model straight to JSON bytes (pydantic-core, one pass).

Routes declare ``response_model`` for the OpenAPI schema and return
:func:`json_response`, which skips FastAPI's dict round trip (dataclass ``asdict`` +
re-validation) -- the difference is tens of ms on a batch of 1,000 recipients.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``application/json`` response holding ``model.model_dump_json()``."""
    return Response(
        content=model.model_dump_json(), status_code=status_code, media_type="application/json"
    )
