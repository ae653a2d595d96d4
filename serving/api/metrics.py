"""The service's own request latency, per route, as a Prometheus histogram.

:class:`LatencyMiddleware` (plain ASGI, no per-request allocation beyond a float) times
every HTTP request from the moment the app receives it until the last response byte is
handed to the server, and files it under the route *template* (``/v1/customers/
{customer_id}/scores``, never the customer id itself). :class:`LatencyHistogram` keeps the
counts in a small numpy array; with ``folder`` set (``klantbeeld serve`` sets one per run)
each worker process writes its array to ``<folder>/worker-<pid>.npy`` as a memory map and
``GET /metrics`` sums every worker's file, so the figures cover all workers whichever
worker answers the scrape.

:func:`render_model_info` writes the gauge ``klantbeeld_model_info{model,version,alias} 1``,
one series per model version the answering worker's artifacts serve
(:mod:`serving.api.model_info`); it is rebuilt with the artifacts on every reload.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from serving.api.model_info import ModelInfo

log = logging.getLogger(__name__)

METRIC = "klantbeeld_http_request_duration_seconds"
MODEL_INFO = "klantbeeld_model_info"
#: Upper bounds of the histogram buckets, seconds (Prometheus ``le``); +Inf is implicit.
BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
UNMATCHED = "<unmatched>"
_ANY = "*"
_KEYS_FILE = "keys.json"


class LatencyHistogram:
    """Request counts per (method, route template) and latency bucket, plus the sum.

    Parameters
    ----------
    keys : iterable of (str, str)
        ``(method, route template)`` pairs the app serves; anything else is counted
        under ``("*", "<unmatched>")``.
    folder : Path, optional
        Share the counts across worker processes through memory-mapped files here.

    Attributes
    ----------
    data : ndarray of float64, shape (n_keys, len(BUCKETS) + 2)
        Per key: the count in each bucket (non-cumulative; the last bucket is +Inf), then
        the sum of durations (seconds).
    """

    def __init__(self, keys: Iterable[tuple[str, str]], folder: Path | None = None) -> None:
        self.keys: list[tuple[str, str]] = sorted(set(keys)) + [(_ANY, UNMATCHED)]
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._unmatched = len(self.keys) - 1
        shape = (len(self.keys), len(BUCKETS) + 2)
        self.folder = Path(folder) if folder is not None else None
        if self.folder is None:
            self.data = np.zeros(shape, dtype=np.float64)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            keys_file = self.folder / _KEYS_FILE
            if not keys_file.is_file():
                tmp = keys_file.with_name(f".{_KEYS_FILE}.{os.getpid()}")
                tmp.write_text(json.dumps(self.keys))
                os.replace(tmp, keys_file)
            self.data = np.lib.format.open_memmap(
                self.folder / f"worker-{os.getpid()}.npy", mode="w+", dtype=np.float64, shape=shape
            )

    def observe(self, method: str, route: str | None, seconds: float) -> None:
        """Count one request of ``seconds`` duration."""
        i = self._index.get((method, route), self._unmatched) if route else self._unmatched
        row = self.data[i]
        row[bisect.bisect_left(BUCKETS, seconds)] += 1.0
        row[-1] += seconds

    def totals(self) -> np.ndarray:
        """Counts summed over every worker sharing ``folder`` (this process alone without)."""
        if self.folder is None:
            return np.array(self.data)
        total = np.zeros_like(self.data)
        for f in sorted(self.folder.glob("worker-*.npy")):
            try:
                arr = np.load(f, mmap_mode="r")
            except (OSError, ValueError):  # a worker still creating its file
                continue
            if arr.shape == total.shape:
                total += arr
        return total

    def render(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        data = self.totals()
        lines = [
            f"# HELP {METRIC} Server-side time to handle an HTTP request, by route template.",
            f"# TYPE {METRIC} histogram",
        ]
        les = [_fmt(b) for b in BUCKETS] + ["+Inf"]
        for (method, route), row in zip(self.keys, data, strict=True):
            labels = f'method="{method}",route="{_escape(route)}"'
            cum = np.cumsum(row[:-1])
            for le, n in zip(les, cum, strict=True):
                lines.append(f'{METRIC}_bucket{{{labels},le="{le}"}} {int(n)}')
            lines.append(f"{METRIC}_sum{{{labels}}} {row[-1]:.6f}")
            lines.append(f"{METRIC}_count{{{labels}}} {int(cum[-1])}")
        return "\n".join(lines) + "\n"


def render_model_info(models: Sequence[ModelInfo]) -> str:
    """The ``klantbeeld_model_info`` gauge in Prometheus text format (version 0.0.4).

    Parameters
    ----------
    models : sequence of ModelInfo
        The served model versions (``Artifacts.models``).

    Returns
    -------
    str
        HELP and TYPE lines, then ``klantbeeld_model_info{model="…",version="…",
        alias="…"} 1`` per distinct entry, sorted; no series when nothing is served.
    """
    lines = [
        f"# HELP {MODEL_INFO} Model versions this worker serves (value always 1).",
        f"# TYPE {MODEL_INFO} gauge",
    ]
    for m in sorted(set(models)):
        model, version, alias = _escape(m.model), _escape(m.version), _escape(m.alias)
        lines.append(f'{MODEL_INFO}{{model="{model}",version="{version}",alias="{alias}"}} 1')
    return "\n".join(lines) + "\n"


def _fmt(x: float) -> str:
    return repr(float(x))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class LatencyMiddleware:
    """ASGI middleware that times every HTTP request into a :class:`LatencyHistogram`.

    The route template is read from ``scope["route"]`` after routing, so path parameters
    (customer ids) never become labels.
    """

    def __init__(self, app: Any, histogram: LatencyHistogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = getattr(scope.get("route"), "path", None)
            self.histogram.observe(scope["method"], route, time.perf_counter() - start)


__all__ = [
    "BUCKETS",
    "LatencyHistogram",
    "LatencyMiddleware",
    "METRIC",
    "MODEL_INFO",
    "UNMATCHED",
    "render_model_info",
]
