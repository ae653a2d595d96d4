"""MicroBatcher: small calls run on the event loop, never beside a call on the thread.

A coalesced call of at most ``inline_max`` recipients runs on the event loop when the
recommendation thread is idle; while a call runs there (a batch of 1,000, say), smaller
ones queue behind it on the thread, so the model and context are never used by two
threads at once. Every request gets its own recipient's result either way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime

import pytest

from serving.api.batcher import MicroBatcher

NOW = datetime(2026, 6, 1)


class Service:
    """Records which thread answered each call and fails on concurrent use."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[str, list[str]]] = []
        self.busy = threading.Lock()

    def recommend(self, ids, placement, *, n=None, now=None):
        if not self.busy.acquire(blocking=False):
            raise AssertionError("two threads used the service at once")
        try:
            self.calls.append((threading.current_thread().name, list(ids)))
            if len(ids) > 1 and self.delay_s:
                time.sleep(self.delay_s)
            return [Result(cid) for cid in ids]
        finally:
            self.busy.release()


class Result:
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id


def test_small_calls_run_inline_and_wait_for_a_call_on_the_thread():
    service = Service(delay_s=0.2)

    async def main():
        batcher = MicroBatcher(inline_max=2)
        alone = await batcher.recommend(service, "A", "p", None, NOW)
        big = asyncio.create_task(batcher.call(service.recommend, ["B1", "B2", "B3"], "p"))
        await asyncio.sleep(0.05)  # the big call is running on the thread now
        during = await batcher.recommend(service, "C", "p", None, NOW)
        await big
        after = await batcher.recommend(service, "D", "p", None, NOW)
        await batcher.close()
        return alone, during, after

    alone, during, after = asyncio.run(main())
    assert [r.customer_id for r in (alone, during, after)] == ["A", "C", "D"]
    main_thread = threading.main_thread().name
    threads = [name for name, _ in service.calls]
    assert threads[0] == main_thread  # idle thread: on the event loop
    assert threads[1].startswith("kb-recommend") and threads[2].startswith("kb-recommend")
    assert threads[3] == main_thread  # the thread is idle again


def test_calls_above_inline_max_go_to_the_thread():
    service = Service()

    async def main():
        batcher = MicroBatcher(inline_max=0)
        got = await asyncio.gather(
            *(batcher.recommend(service, cid, "p", None, NOW) for cid in ["X", "Y"])
        )
        await batcher.close()
        return got

    got = asyncio.run(main())
    assert [r.customer_id for r in got] == ["X", "Y"]
    assert all(name.startswith("kb-recommend") for name, _ in service.calls)


def test_inline_max_must_not_be_negative():
    with pytest.raises(ValueError, match="inline_max"):
        MicroBatcher(inline_max=-1)
