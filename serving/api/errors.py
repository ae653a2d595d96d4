"""Library errors -> HTTP errors, in one place.

======================  ======  ==================================================
error                   status  when
======================  ======  ==================================================
UnauthorizedError       401     no X-API-Key, or an unknown/revoked key
ForbiddenError          403     the key lacks the route's scope
NotFoundError           404     unknown customer (scores), unknown model (audience)
PayloadTooLargeError    413     request body over ``api_max_body_bytes``
NotTrainedError         503     scores, shop or recommender not loaded
ConfigError             422     unknown placement or another unusable argument
KlantbeeldError         500     anything else raised on purpose (generic body)
any other exception     500     a bug: generic body, logged without its message
======================  ======  ==================================================

Bodies are ``{"detail": <message>, "type": <kind>}``, like FastAPI's own errors. Only
klantbeeld's own 4xx/503 errors show their message to the client: a plain ``ValueError``
from pandas or numpy is a bug, not a bad request, and its text (which may quote data) is
never sent. 500s are logged with method, route template, error class and the stack's
file/line frames -- no message, so no customer data reaches the log.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from klantbeeld.errors import ConfigError, KlantbeeldError, NotTrainedError

log = logging.getLogger(__name__)

#: Body of every 500 (the cause is in the server log, not in the response).
INTERNAL_DETAIL = "internal error; the cause is logged on the server"


class NotFoundError(KlantbeeldError):
    """The addressed resource (customer, model) does not exist."""


class UnauthorizedError(KlantbeeldError):
    """No ``X-API-Key`` header, or a key that is unknown or revoked."""


class ForbiddenError(KlantbeeldError):
    """A valid key without the scope the route needs."""


class PayloadTooLargeError(KlantbeeldError, HTTPException):
    """The request body is larger than the configured limit.

    Also an ``HTTPException``: FastAPI re-raises those when they occur while it reads the
    body (any other error there becomes its own 400), so the 413 handler gets it.
    """

    def __init__(self, message: str) -> None:
        HTTPException.__init__(self, status_code=413, detail=message)

    def __str__(self) -> str:
        return str(self.detail)


#: (error class, HTTP status, ``type`` in the body), most specific first.
ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (UnauthorizedError, 401, "unauthorized"),
    (ForbiddenError, 403, "forbidden"),
    (NotFoundError, 404, "not_found"),
    (PayloadTooLargeError, 413, "payload_too_large"),
    (NotTrainedError, 503, "not_available"),
    (ConfigError, 422, "invalid_argument"),
    (KlantbeeldError, 500, "error"),
)


def _route(scope: Mapping[str, Any]) -> str:
    return getattr(scope.get("route"), "path", "<unmatched>")


def log_internal_error(scope: Mapping[str, Any], exc: BaseException) -> None:
    """Log a 500: method, route template, error class and stack frames, never the message.

    Parameters
    ----------
    scope : dict
        ASGI scope of the request (its route template, not its path, is logged).
    exc : BaseException
        The error; ``str(exc)`` is left out (it may quote request data).
    """
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error(
        "%s %s -> 500 %s.%s\n%s",
        scope.get("method", "?"),
        _route(scope),
        type(exc).__module__,
        type(exc).__qualname__,
        frames,
    )


def internal_error_response() -> JSONResponse:
    """The generic 500 body."""
    return JSONResponse({"detail": INTERNAL_DETAIL, "type": "internal_error"}, status_code=500)


def _handler(status: int, kind: str):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if status >= 500 and status != 503:
            log_internal_error(request.scope, exc)
            return internal_error_response()
        if status >= 500:
            log.warning("%s %s -> %d %s", request.method, _route(request.scope), status, kind)
        return JSONResponse({"detail": str(exc), "type": kind}, status_code=status)

    return handle


class InternalErrorMiddleware:
    """ASGI middleware: any exception no handler took becomes the generic 500.

    Starlette's own last-resort handler re-raises the error after answering, and the
    server then logs it with its message; this one logs it with
    :func:`log_internal_error` and stops it. When the response has already started, the
    connection is closed instead (nothing more can be sent).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log_internal_error(scope, exc)
            if started:
                return
            await internal_error_response()(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register one JSON handler per error class of :data:`ERROR_STATUS` on ``app`` and
    the :class:`InternalErrorMiddleware` for everything else."""
    for cls, status, kind in ERROR_STATUS:
        app.add_exception_handler(cls, _handler(status, kind))
    app.add_middleware(InternalErrorMiddleware)


__all__ = [
    "ERROR_STATUS",
    "ForbiddenError",
    "INTERNAL_DETAIL",
    "InternalErrorMiddleware",
    "NotFoundError",
    "PayloadTooLargeError",
    "UnauthorizedError",
    "install_error_handlers",
    "internal_error_response",
    "log_internal_error",
]
