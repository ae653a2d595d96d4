"""``klantbeeld serve``: run the API under uvicorn (uvloop + httptools) with N workers.

uvicorn starts each worker as a fresh process that calls
``serving.api.app:create_app()``; the settings reach it as ``KLANTBEELD_*`` environment
variables written here, so every worker serves the same configuration. The workers share
one latency-histogram folder (``<home>/run/metrics-<port>``, emptied at start) so
``GET /metrics`` covers all of them. uvicorn's access log is off: request paths hold
customer ids, and no personal data goes to the logs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from klantbeeld.settings import Settings, get_settings

log = logging.getLogger(__name__)

APP_FACTORY = "serving.api.app:create_app"


def settings_env(settings: Settings) -> dict[str, str]:
    """``KLANTBEELD_*`` variables that rebuild ``settings`` in another process."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        key = f"KLANTBEELD_{name.upper()}"
        if isinstance(value, dict | list):
            env[key] = json.dumps(value)
        elif isinstance(value, Path):
            env[key] = str(value.resolve())
        else:
            env[key] = str(value)
    return env


def serve(
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 2,
    *,
    log_level: str = "info",
) -> None:
    """Serve the API until interrupted (blocks).

    Parameters
    ----------
    settings : Settings, optional
        Default :func:`klantbeeld.settings.get_settings`.
    host : str
        Interface to bind; ``127.0.0.1`` keeps it local, ``0.0.0.0`` exposes it.
    port : int
        TCP port.
    workers : int
        Worker processes (ARCHITECTURE §7 targets are measured with 2).
    log_level : str
        uvicorn log level.
    """
    import uvicorn

    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    settings = settings or get_settings()
    metrics_dir = settings.metrics_dir or Path(settings.home) / "run" / f"metrics-{port}"
    if metrics_dir.exists():
        shutil.rmtree(metrics_dir)
    metrics_dir.mkdir(parents=True)
    os.environ.update(settings_env(settings.model_copy(update={"metrics_dir": metrics_dir})))
    get_settings.cache_clear()
    log.info("serving klantbeeld on http://%s:%d with %d worker(s)", host, port, workers)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
    )


__all__ = ["serve", "settings_env"]
