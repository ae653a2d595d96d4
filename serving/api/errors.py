"""Library errors -> HTTP errors, in one place.

======================  ======  ==================================================
error                   status  when
======================  ======  ==================================================
UnauthorizedError       401     no X-API-Key, or an unknown/revoked key
ForbiddenError          403     the key lacks the route's scope
NotFoundError           404     unknown customer (scores), unknown model (audience)
NotTrainedError         503     scores, shop or recommender not loaded
ConfigError             422     unknown placement or another unusable argument
ValueError              400     a library function refused an argument
KlantbeeldError         500     anything else raised on purpose
======================  ======  ==================================================

Bodies are ``{"detail": <message>, "type": <kind>}``, like FastAPI's own errors. Messages
go to the client; the log gets the kind and route only (messages may carry customer ids).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from klantbeeld.errors import ConfigError, KlantbeeldError, NotTrainedError

log = logging.getLogger(__name__)


class NotFoundError(KlantbeeldError):
    """The addressed resource (customer, model) does not exist."""


class UnauthorizedError(KlantbeeldError):
    """No ``X-API-Key`` header, or a key that is unknown or revoked."""


class ForbiddenError(KlantbeeldError):
    """A valid key without the scope the route needs."""


#: (error class, HTTP status, ``type`` in the body), most specific first.
ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (UnauthorizedError, 401, "unauthorized"),
    (ForbiddenError, 403, "forbidden"),
    (NotFoundError, 404, "not_found"),
    (NotTrainedError, 503, "not_available"),
    (ConfigError, 422, "invalid_argument"),
    (ValueError, 400, "bad_request"),
    (KlantbeeldError, 500, "error"),
)


def _handler(status: int, kind: str):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", "<unmatched>")
        if status >= 500:
            log.warning("%s %s -> %d %s", request.method, route, status, kind)
        return JSONResponse({"detail": str(exc), "type": kind}, status_code=status)

    return handle


def install_error_handlers(app: FastAPI) -> None:
    """Register one JSON handler per error class of :data:`ERROR_STATUS` on ``app``."""
    for cls, status, kind in ERROR_STATUS:
        app.add_exception_handler(cls, _handler(status, kind))


__all__ = [
    "ERROR_STATUS",
    "ForbiddenError",
    "NotFoundError",
    "UnauthorizedError",
    "install_error_handlers",
]
