"""The real-time scoring pieces of one API worker: loaded at startup, read by the routes.

:class:`Realtime` holds the online store (always) and the conversion-intent engine
(:class:`serving.online_intent.OnlineIntent`, None with the reason in ``problem`` when
there are no batch scores with a conversion-intent column, no champion or no shop).
:func:`realtime_lifespan` builds it once per worker after the artifacts have loaded (the
events router carries it, FastAPI merges it into the app's lifespan); when the artifacts
are reloaded with another scores file, :func:`get_realtime` rebuilds it on a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from klantbeeld.errors import KlantbeeldError
from serving.online_intent import OnlineIntent, load_online_intent
from serving.online_store import OnlineStore

log = logging.getLogger(__name__)


@dataclass
class Realtime:
    """Online store plus, when it could be loaded, the conversion-intent engine.

    Attributes
    ----------
    store : OnlineStore
    intent : OnlineIntent or None
    problem : str or None
        Why ``intent`` is None.
    source : str or None
        The scores file the engine extends.
    """

    store: OnlineStore
    intent: OnlineIntent | None = None
    problem: str | None = None
    source: str | None = None


def load_realtime(art: Any) -> Realtime:
    """Build :class:`Realtime` for the loaded artifacts ``art`` (never raises on data)."""
    store = OnlineStore(art.settings.resolved_state_file)
    scores = getattr(art, "scores", None)
    if scores is None:
        return Realtime(store, problem="no batch scores loaded")
    try:
        intent = load_online_intent(art.settings, scores)
    except (KlantbeeldError, OSError) as exc:
        return Realtime(store, problem=str(exc), source=scores.source)
    except Exception as exc:  # a corrupt model or shop: serve batch scores only
        log.error("real-time intent could not be loaded: %s", type(exc).__name__)
        return Realtime(store, problem=f"unreadable ({type(exc).__name__})", source=scores.source)
    log.info("real-time conversion intent on top of %s", scores.source)
    return Realtime(store, intent=intent, source=scores.source)


@asynccontextmanager
async def realtime_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load :class:`Realtime` on a thread once the app's artifacts are loaded."""
    art = getattr(app.state, "artifacts", None)
    if art is not None:
        app.state.realtime = await asyncio.to_thread(load_realtime, art)
        app.state.realtime_lock = asyncio.Lock()
    yield


async def get_realtime(request: Request) -> Realtime | None:
    """The worker's :class:`Realtime` (None before the lifespan ran), rebuilt when the
    artifacts were reloaded with a different scores file."""
    state = request.app.state
    rt: Realtime | None = getattr(state, "realtime", None)
    art = getattr(state, "artifacts", None)
    if rt is None or art is None:
        return rt
    source = None if art.scores is None else art.scores.source
    if source != rt.source and source is not None:
        async with state.realtime_lock:
            if state.realtime.source != source:
                state.realtime = await asyncio.to_thread(load_realtime, art)
        rt = state.realtime
    return rt


RealtimeDep = Annotated[Realtime | None, Depends(get_realtime)]

__all__ = ["Realtime", "RealtimeDep", "get_realtime", "load_realtime", "realtime_lifespan"]
