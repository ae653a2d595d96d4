"""A recommender whose candidate tables cannot be built never stops the API: ``/v1/ready``
answers 503 with the reason and every recipient gets the flagged popular fallback."""

from __future__ import annotations

from test_api import keyed_client, served  # noqa: F401  (fixture)

from features import contract as c
from serving.api.app import create_app


def test_tables_that_fail_to_build_give_503_ready_and_flagged_fallbacks(served, monkeypatch):  # noqa: F811
    settings, customers, _ = served

    def broken(*args, **kwargs):
        raise IndexError("index 7 is out of bounds")  # e.g. a source array cut short

    monkeypatch.setattr("serving.nbo_online.cached_tables", broken)
    with keyed_client(create_app(settings)) as client:
        ready = client.get("/v1/ready")
        assert ready.status_code == 503
        problems = ready.json()["problems"]
        assert "candidate tables unreadable (IndexError" in problems["recommender"]
        cid = customers.loc[customers[c.CONSENT_EMAIL], c.CUSTOMER_ID].iloc[0]
        r = client.get(f"/v1/customers/{cid}/recommendations", params={"n": 3})
        assert r.status_code == 200, r.text
        assert r.json()["fallback"] is True and len(r.json()["items"]) == 3
