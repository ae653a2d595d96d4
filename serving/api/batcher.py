"""Coalesce concurrent single-recipient requests into one vectorised call.

:class:`MicroBatcher` queues ``GET /v1/customers/{id}/recommendations`` requests and a
single consumer task hands everything queued so far (same placement and size) to one
:meth:`RecommendationService.recommend` call. While that call runs, new requests queue up
and form the next batch: batches grow with the load and an idle service adds no wait.
Results are those of the single call (the batch-equals-single contract).

With precomputed candidate tables (:mod:`serving.nbo_online`) a call of a few recipients
costs well under a millisecond, less than handing it to a thread and back (two wake-ups,
GIL hand-overs). So a call of at most ``inline_max`` recipients runs on the event loop
itself when no call is in flight on the recommendation thread; larger calls (and the
batch route, :meth:`MicroBatcher.call`) run on that thread. Either way the model and
context objects are never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from klantbeeld.errors import KlantbeeldError
from serving.api.artifacts import RecommendationService
from serving.next_best_offer import RecipientResult

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Requests per coalesced call at most.
MAX_BATCH = 256
#: Coalesced calls of at most this many recipients run on the event loop (see above).
INLINE_MAX = 8

_Key = tuple[int, str, int | None]
_Job = tuple[_Key, RecommendationService, str, datetime, "asyncio.Future[RecipientResult]"]


class MicroBatcher:
    """Queue single-recipient requests; run them in batches on one worker thread.

    Parameters
    ----------
    max_batch : int
        Requests per call at most.
    inline_max : int
        Calls of at most this many recipients run on the event loop when the
        recommendation thread is idle; 0: every call goes to the thread.
    """

    def __init__(self, max_batch: int = MAX_BATCH, inline_max: int = INLINE_MAX) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if inline_max < 0:
            raise ValueError(f"inline_max must be >= 0, got {inline_max}")
        self.max_batch = max_batch
        self.inline_max = inline_max
        self._in_flight = 0  # calls submitted to the thread and not finished there
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.calls = 0
        self.requests = 0

    async def recommend(
        self,
        service: RecommendationService,
        customer_id: str,
        placement: str,
        n: int | None,
        now: datetime,
    ) -> RecipientResult:
        """The recipient's result, computed together with whatever else is queued.

        Requests in one batch share the latest ``now`` among them (they arrived within
        the duration of the previous call).
        """
        loop = asyncio.get_running_loop()
        queue = self._queue
        if queue is None or self._task is None or self._task.done():
            queue = self._queue = asyncio.Queue()
            self._task = loop.create_task(self._consume(queue))
        fut: asyncio.Future[RecipientResult] = loop.create_future()
        queue.put_nowait(((id(service), placement, n), service, customer_id, now, fut))
        return await fut

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, "kb-recommend")
        return self._executor

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the recommendation thread, after the calls queued
        before it. Every model and rule call of a worker runs on that one thread, so the
        model and context objects are never used by two threads at once."""
        loop = asyncio.get_running_loop()
        done = self._pool().submit(functools.partial(fn, *args, **kwargs))
        self._in_flight += 1
        # counted down when the thread has finished, even if the awaiting request is gone
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(self._finished))
        return await asyncio.wrap_future(done)

    def _finished(self) -> None:
        self._in_flight -= 1

    async def _consume(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            jobs = [await queue.get()]
            while not queue.empty() and len(jobs) < self.max_batch:
                jobs.append(queue.get_nowait())
            groups: dict[_Key, list[_Job]] = defaultdict(list)
            for job in jobs:
                groups[job[0]].append(job)
            for (_, placement, n), group in groups.items():
                service = group[0][1]
                ids = [job[2] for job in group]
                now = max(job[3] for job in group)
                try:
                    if len(ids) <= self.inline_max and self._in_flight == 0:
                        results = service.recommend(ids, placement, n=n, now=now)
                    else:
                        results = await self.call(service.recommend, ids, placement, n=n, now=now)
                except Exception as exc:  # handed to every waiting request
                    for job in group:
                        if not job[4].done():
                            job[4].set_exception(exc)
                    continue
                self.calls += 1
                self.requests += len(group)
                by_id = {r.customer_id: r for r in results}
                for job in group:
                    if job[4].done():
                        continue
                    result = by_id.get(job[2])
                    if result is None:
                        job[4].set_exception(KlantbeeldError("recipient missing from the batch"))
                    else:
                        job[4].set_result(result)

    async def close(self) -> None:
        """Stop the consumer task and the worker thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


__all__ = ["MicroBatcher"]
