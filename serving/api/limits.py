"""Request limits and CORS, wired by :func:`install_limits`.

- Body size: :class:`BodyLimitMiddleware` answers 413 ``payload_too_large`` to a request
  whose ``Content-Length`` is over ``KLANTBEELD_API_MAX_BODY_BYTES`` before reading it, and
  stops a body without a length (chunked) as soon as it grows past the limit.
- Batch sizes are bounds of the request schemas (:mod:`serving.api.schemas`): 1,000
  recipients per batch, 10,000 events per call; over them, 422 naming the field.
- CORS is off unless ``KLANTBEELD_API_CORS_ORIGINS`` lists origins: then those origins
  (never ``*``) may call with the ``X-API-Key`` and ``Content-Type`` headers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from klantbeeld.settings import Settings
from serving.api.errors import PayloadTooLargeError


def _too_large(limit: int) -> str:
    return f"request body is larger than {limit:,} bytes (KLANTBEELD_API_MAX_BODY_BYTES)"


class BodyLimitMiddleware:
    """ASGI middleware refusing request bodies over ``max_bytes`` with 413.

    Parameters
    ----------
    app : ASGI app
    max_bytes : int
        Largest body accepted, bytes.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    response = JSONResponse(
                        {"detail": _too_large(self.max_bytes), "type": "payload_too_large"},
                        status_code=413,
                    )
                    await response(scope, receive, send)
                    return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLargeError(_too_large(self.max_bytes))
            return message

        await self.app(scope, counted, send)


def install_limits(app: FastAPI, settings: Settings) -> None:
    """Add the body limit and, when origins are configured, CORS to ``app``."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api_cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
            allow_credentials=False,
        )


__all__ = ["BodyLimitMiddleware", "install_limits"]
