"""``DELETE /v1/customers/{id}``: erasure removes the customer from the state store, scores,
recommendations and audience exports, and keeps later events out."""

from __future__ import annotations

import sqlite3

from test_api import _csv, _items, _recs, world  # noqa: F401  (fixture)

from features import contract as c


def _rows_of(path, cid: str) -> int:
    with sqlite3.connect(path) as con:
        return sum(
            con.execute(f"SELECT count(*) FROM {t} WHERE customer_id = ?", (cid,)).fetchone()[0]
            for t in ("events", "purchases", "sends", "consent")
        )


def test_erasure_removes_the_customer_everywhere(world):  # noqa: F811
    client, _, state = world
    client.post(
        "/v1/events",
        json={
            "events": [
                {"event_type": "purchase", "customer_id": "C1", "item_id": "I1"},
                {"event_type": "send", "customer_id": "C1", "item_id": "I2"},
                {"event_type": "consent_update", "customer_id": "C1", "consent_ads": True},
                {"event_type": "purchase", "customer_id": "C3", "item_id": "I1"},
            ]
        },
    )
    assert _rows_of(state.store.path, "C1") == 6  # 3 events + purchase, send, consent
    assert client.get("/v1/customers/C1/scores").status_code == 200
    assert _recs(client, "C1")["eligible"]
    unknown = _recs(client, "NOBODY")

    r = client.delete("/v1/customers/C1")
    assert r.status_code == 200
    assert r.json() == {"customer_id": "C1", "erased": True, "rows_deleted": 6}
    assert _rows_of(state.store.path, "C1") == 0
    assert _rows_of(state.store.path, "C3") == 2  # nobody else touched

    assert client.get("/v1/customers/C1/scores").status_code == 404
    got = _recs(client, "C1")
    assert got == {**unknown, "customer_id": "C1"}  # the unknown-recipient answer
    assert (got["eligible"], got["reason"]) == (False, "unknown_customer")
    web = _recs(client, "C1", placement="web_for_you")  # no consent needed: popular fallback
    assert _items(web) == _items(_recs(client, "NOBODY", placement="web_for_you"))
    batch = client.post(
        "/v1/recommendations/batch",
        json={"placement": "newsletter", "customer_ids": ["C1", "C3", "C1"]},
    ).json()
    assert [(r["customer_id"], r["reason"]) for r in batch["results"]] == [
        ("C1", "unknown_customer"),
        ("C3", None),
    ]
    for consent in ("ads", "email"):
        plain = client.get(
            "/v1/audiences/conversion_intent", params={"min_score": 0.0, "consent": consent}
        )
        assert "C1" not in _csv(plain)[c.CUSTOMER_ID].tolist()
        hashed = client.get(
            "/v1/audiences/conversion_intent",
            params={"min_score": 0.0, "consent": consent, "hashed": True},
        )
        # SHA-256 of C1's e-mail (ann@example.com) and phone (+31612345678)
        assert "71d4f55f" not in hashed.text and "fab7be8a" not in hashed.text

    later = client.post(
        "/v1/events",
        json={"events": [{"event_type": "purchase", "customer_id": "C1", "item_id": "I3"}]},
    ).json()
    assert (later["stored"], later["erased"]) == (0, 1)
    assert _rows_of(state.store.path, "C1") == 0
    again = client.delete("/v1/customers/C1")
    assert again.status_code == 200 and again.json()["rows_deleted"] == 0


def test_erasure_needs_the_admin_scope(world):  # noqa: F811
    from serving.api.keys import KeyStore

    client, _, _ = world
    store = KeyStore(client.app.state.settings.resolved_api_keys_file)
    for scope in ("scores:read", "events:write", "audiences:export", "recommendations:read"):
        key = store.create(frozenset([scope]))
        r = client.delete("/v1/customers/C1", headers={"X-API-Key": key})
        assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert client.get("/v1/customers/C1/scores").status_code == 200
