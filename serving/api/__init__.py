"""The online API (FastAPI): scores, next-best-offers, events, audiences, metrics.

``create_app(settings)`` builds the app; ``serve(settings, host, port, workers)`` runs it
under uvicorn. See ``docs/api.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.api.app import create_app
    from serving.api.serve import serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    # Lazy: importing serving.api must not import FastAPI, pandas or the models.
    if name == "create_app":
        from serving.api.app import create_app

        return create_app
    if name == "serve":
        from serving.api.serve import serve

        return serve
    raise AttributeError(name)
