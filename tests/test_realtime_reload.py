"""The worker's real-time engine follows the artifacts: after a reload onto another scores
file it is rebuilt once (the online rows of the old batch are not served with the new
one), and never rebuilt while the scores file stays the same."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import serving.api.realtime as rt
from serving.online_store import OnlineStore


def test_engine_is_rebuilt_once_when_the_scores_file_changes(tmp_path, monkeypatch):
    store = OnlineStore(tmp_path / "state.sqlite")
    built: list[str] = []

    def fake_load(art):
        built.append(art.scores.source)
        return rt.Realtime(store, problem="stub", source=art.scores.source)

    monkeypatch.setattr(rt, "load_realtime", fake_load)
    state = SimpleNamespace(
        realtime=rt.Realtime(store, source="scores-a.parquet"),
        realtime_lock=asyncio.Lock(),
        artifacts=SimpleNamespace(scores=SimpleNamespace(source="scores-a.parquet")),
    )
    request = SimpleNamespace(app=SimpleNamespace(state=state))

    async def calls() -> list[rt.Realtime | None]:
        first = await rt.get_realtime(request)  # same scores: kept
        state.artifacts = SimpleNamespace(scores=SimpleNamespace(source="scores-b.parquet"))
        second = await asyncio.gather(rt.get_realtime(request), rt.get_realtime(request))
        return [first, *second, await rt.get_realtime(request)]

    got = asyncio.run(calls())
    assert built == ["scores-b.parquet"]  # rebuilt once, for the concurrent calls too
    assert got[0].source == "scores-a.parquet"
    assert {r.source for r in got[1:]} == {"scores-b.parquet"}
    # before the lifespan ran there is nothing to serve from
    empty = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace()))
    assert asyncio.run(rt.get_realtime(empty)) is None
