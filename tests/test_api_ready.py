"""Readiness and reload on the real app (lifespan loading from files): a missing or
corrupt artifact gives ``/v1/ready`` 503 with the reason and flagged fallbacks, never a
crash; ``POST /v1/admin/reload`` swaps in new artifacts while requests keep succeeding."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_api import keyed_client, served  # noqa: F401  (fixture)

from features import contract as c
from serving.api.app import create_app


@pytest.fixture()
def home_copy(served, tmp_path):  # noqa: F811
    settings, customers, _ = served
    shutil.copytree(settings.home, tmp_path / "home")
    return settings.model_copy(update={"home": tmp_path / "home"}), customers


def _consented(customers) -> str:
    return customers.loc[customers[c.CONSENT_EMAIL], c.CUSTOMER_ID].iloc[0]


@pytest.mark.parametrize("damage", ["garbage params", "truncated array", "missing model"])
def test_a_broken_recommender_gives_503_ready_and_flagged_fallbacks(home_copy, damage):
    settings, customers = home_copy
    model = settings.home / "models" / "recommender"
    if damage == "garbage params":
        (model / "params.json").write_text("{not json")
    elif damage == "truncated array":
        arrays = sorted(model.rglob("*.npy"), key=lambda p: -p.stat().st_size)
        arrays[0].write_bytes(arrays[0].read_bytes()[:100])
    else:
        shutil.rmtree(model)
    with keyed_client(create_app(settings)) as client:
        ready = client.get("/v1/ready")
        assert ready.status_code == 503
        problems = ready.json()["problems"]
        assert set(problems) == {"recommender"}, problems
        expected = "train recommender" if damage == "missing model" else "unreadable"
        assert expected in problems["recommender"]
        assert client.get("/v1/health").json()["status"] == "degraded"
        cid = _consented(customers)
        r = client.get(f"/v1/customers/{cid}/recommendations", params={"n": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["fallback"] is True and len(body["items"]) == 5
        batch = client.post(
            "/v1/recommendations/batch", json={"placement": "newsletter", "customer_ids": [cid]}
        ).json()
        assert batch["results"][0]["fallback"] is True
        assert client.get(f"/v1/customers/{cid}/scores").status_code == 200


def test_a_corrupt_scores_file_gives_503_ready_and_scores_503(home_copy):
    settings, customers = home_copy
    (scores_file,) = (settings.home / "scores").glob("*.parquet")
    scores_file.write_bytes(b"PAR1 this is not parquet")
    shutil.rmtree(settings.home / "cache", ignore_errors=True)
    with keyed_client(create_app(settings)) as client:
        ready = client.get("/v1/ready")
        assert ready.status_code == 503
        assert "unreadable" in ready.json()["problems"]["scores"]
        cid = _consented(customers)
        assert client.get(f"/v1/customers/{cid}/scores").status_code == 503
        r = client.get(f"/v1/customers/{cid}/recommendations").json()
        assert r["eligible"] and r["fallback"] is False  # the recommender is fine


def _new_scores(settings, ids, value: float) -> None:
    table = pa.table(
        {
            c.CUSTOMER_ID: ids,
            "churn_score": np.full(len(ids), value),
            "churn_model_version": pa.array([2] * len(ids), pa.int32()),
        }
    )
    pq.write_table(table, settings.home / "scores" / "customer_scores_as_of=2026-11-01.parquet")


def test_reload_under_concurrent_requests_loses_none(home_copy):
    settings, customers = home_copy
    settings = settings.model_copy(update={"api_reload_poll_s": 0.05})
    ids = customers[c.CUSTOMER_ID].tolist()
    cid = _consented(customers)
    app = create_app(settings)
    other_worker = create_app(settings)
    with keyed_client(app) as client, keyed_client(other_worker) as other:
        old = client.get(f"/v1/customers/{ids[-1]}/scores").json()
        assert old["as_of"] == "2026-10-01" and old["scores"]["churn"]["model_version"] == 1
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            k = 0
            while not stop.is_set():
                k += 1
                if k % 2:
                    r = client.get(f"/v1/customers/{ids[k % len(ids)]}/scores")
                else:
                    r = client.get(f"/v1/customers/{cid}/recommendations")
                statuses.append(r.status_code)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        _new_scores(settings, ids, 0.25)
        before = len(statuses)
        r = client.post("/v1/admin/reload")
        assert r.status_code == 200, r.text
        assert r.json()["ready"] and r.json()["reloads"] == 1
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert len(statuses) > before + 4  # requests ran during and after the reload
        assert set(statuses) == {200}, sorted(set(statuses))
        new = client.get(f"/v1/customers/{ids[-1]}/scores").json()
        assert new["as_of"] == "2026-11-01" and new["scores"]["churn"] == {
            "score": 0.25,
            "model_version": 2,
            "top_up": [],
            "top_down": [],
        }
        deadline = time.monotonic() + 5
        while other.get(f"/v1/customers/{ids[-1]}/scores").json()["as_of"] != "2026-11-01":
            assert time.monotonic() < deadline, "the other worker did not follow the reload"
            time.sleep(0.05)
        assert other.app.state.reloader.reloads == 1


def test_reload_needs_admin(home_copy):
    settings, _ = home_copy
    with keyed_client(create_app(settings), scopes=["scores:read"]) as client:
        r = client.post("/v1/admin/reload")
        assert r.status_code == 403 and "admin" in r.json()["detail"]
