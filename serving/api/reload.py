"""``POST /v1/admin/reload``: load new champion artifacts without dropping a request.

:class:`Reloader` loads a fresh :class:`serving.api.artifacts.Artifacts` on a thread
(the event loop keeps serving from the old one meanwhile) and then swaps
``app.state.artifacts`` in one assignment. A request reads the artifacts once, through
:func:`serving.api.deps.get_artifacts`, so it is answered entirely by the old set or
entirely by the new one, and none fails because of the swap. When the new set cannot be
loaded at all (an invalid placements file) the old one stays.

Several worker processes: the reload call writes a token to ``<home>/run/reload-token``;
every worker's :meth:`Reloader.watch` task checks the token every
``KLANTBEELD_API_RELOAD_POLL_S`` seconds and reloads when it changed, so all workers
follow within that interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from pathlib import Path
from typing import Any

from klantbeeld.atomic import atomic_write_text
from klantbeeld.settings import Settings
from serving.api.artifacts import Artifacts, load_artifacts

log = logging.getLogger(__name__)


def token_file(settings: Settings) -> Path:
    """Where a reload request is announced to every worker (``<home>/run/reload-token``)."""
    return Path(settings.home) / "run" / "reload-token"


class Reloader:
    """Reload the artifacts of one app (one worker process).

    Parameters
    ----------
    state : object
        The app's ``app.state``; ``state.artifacts`` is replaced.
    settings : Settings
    """

    def __init__(self, state: Any, settings: Settings) -> None:
        self.state = state
        self.settings = settings
        self.reloads = 0
        self._lock = asyncio.Lock()
        self._seen = self._read_token()

    def _read_token(self) -> str | None:
        try:
            return token_file(self.settings).read_text().strip() or None
        except OSError:
            return None

    async def reload(self) -> Artifacts:
        """Load the artifacts anew (on a thread) and swap them in; returns the new set."""
        async with self._lock:
            art = await asyncio.to_thread(load_artifacts, self.settings)
            self.state.artifacts = art
            self.reloads += 1
            log.info("artifacts reloaded (%d); missing: %s", self.reloads, sorted(art.problems))
            return art

    async def reload_all(self) -> Artifacts:
        """Announce a reload to every worker, then reload this one."""
        token = secrets.token_hex(8)
        atomic_write_text(token_file(self.settings), token)
        self._seen = token
        return await self.reload()

    async def watch(self, interval_s: float) -> None:
        """Reload whenever another worker announced a reload (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            token = self._read_token()
            if token is not None and token != self._seen:
                self._seen = token
                try:
                    await self.reload()
                except Exception as exc:  # keep serving the old artifacts
                    log.error("reload failed, old artifacts kept: %s", type(exc).__name__)

    @staticmethod
    async def stop(task: asyncio.Task[None] | None) -> None:
        """Cancel a :meth:`watch` task."""
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["Reloader", "token_file"]
