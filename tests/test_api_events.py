"""``POST /v1/events``: the event log (WAL, durable, idempotent by ``event_id``), purchases
excluding items at once, and consent changes that count on the next call."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pandas as pd
from test_api import NOW, _csv, _items, _recs, world  # noqa: F401  (fixture)

from features import contract as c


def _post(client, *events):
    r = client.post("/v1/events", json={"events": list(events)})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_same_batch_posted_twice_is_stored_once(world):  # noqa: F811
    client, _, state = world
    batch = [
        {"event_id": "e1", "event_type": "purchase", "customer_id": "C1", "item_id": "I1"},
        {
            "event_id": "e2",
            "event_type": "product_view",
            "customer_id": "C3",
            "item_id": "I5",
            "session_id": "s9",
            "channel": "web",
        },
        {"event_id": "e2", "event_type": "product_view", "customer_id": "C3", "item_id": "I5"},
        {"event_type": "page_view", "customer_id": "C3"},  # no id: stored every time
    ]
    first = _post(client, *batch)
    assert first == {
        "received": 4,
        "stored": 3,
        "duplicates": 1,
        "erased": 0,
        "purchases": 1,
        "sends": 0,
        "consent_updates": 0,
    }
    again = _post(client, *batch)
    assert (again["stored"], again["duplicates"], again["purchases"]) == (1, 3, 0)
    assert state.store.count_events() == 4
    assert len(state.recent_purchases(NOW - timedelta(days=1), ["C1"])) == 1
    with sqlite3.connect(state.store.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = con.execute(
            "SELECT event_type, item_id, session_id, channel FROM events WHERE event_id = 'e2'"
        ).fetchone()
    assert row == ("product_view", "I5", "s9", "web")


def test_a_purchase_posted_excludes_the_item_from_the_next_call(world):  # noqa: F811
    client, _, _ = world
    assert _items(_recs(client, "C3"))[:2] == ["I1", "I2"]
    _post(
        client,
        {
            "event_type": "purchase",
            "customer_id": "C3",
            "item_id": "I2",
            "quantity": 1,
            "value": 8.0,
            "order_id": "o1",
        },
    )
    assert "I2" not in _items(_recs(client, "C3", n=8))


def test_consent_withdrawal_stops_recommendations_and_exports_at_once(world):  # noqa: F811
    client, clock, _ = world
    assert _recs(client, "C1")["eligible"]
    assert (
        "C1"
        in _csv(client.get("/v1/audiences/churn", params={"min_score": 0.0}))[
            c.CUSTOMER_ID
        ].tolist()
    )
    out = _post(
        client,
        {
            "event_type": "consent_update",
            "customer_id": "C1",
            "consent_email": False,
            "consent_ads": False,
        },
    )
    assert out["consent_updates"] == 1
    single = _recs(client, "C1")
    assert (single["eligible"], single["reason"], single["items"]) == (
        False,
        "no_email_consent",
        [],
    )
    batch = client.post(
        "/v1/recommendations/batch", json={"placement": "newsletter", "customer_ids": ["C1", "C3"]}
    ).json()
    assert [r["eligible"] for r in batch["results"]] == [False, True]
    for consent in ("ads", "email"):
        got = _csv(client.get("/v1/audiences/churn", params={"min_score": 0.0, "consent": consent}))
        assert "C1" not in got[c.CUSTOMER_ID].tolist()

    # an older update arriving late does not undo the withdrawal; a newer one does
    _post(
        client,
        {
            "event_type": "consent_update",
            "customer_id": "C1",
            "consent_email": True,
            "ts": (NOW - timedelta(days=1)).isoformat(),
        },
    )
    assert not _recs(client, "C1")["eligible"]
    clock.now = NOW + timedelta(hours=1)
    _post(client, {"event_type": "consent_update", "customer_id": "C1", "consent_email": True})
    assert _recs(client, "C1")["eligible"]
    got = _csv(client.get("/v1/audiences/churn", params={"min_score": 0.0, "consent": "ads"}))
    assert "C1" not in got[c.CUSTOMER_ID].tolist()  # ads consent still withdrawn


def test_consent_given_online_counts_at_once(world):  # noqa: F811
    client, _, _ = world
    assert _recs(client, "C2")["reason"] == "no_email_consent"
    _post(client, {"event_type": "consent_update", "customer_id": "C2", "consent_email": True})
    assert _recs(client, "C2")["eligible"]
    got = _csv(client.get("/v1/audiences/churn", params={"min_score": 0.0, "consent": "email"}))
    assert "C2" in got[c.CUSTOMER_ID].tolist()


def test_event_fields_are_checked_per_type(world):  # noqa: F811
    client, _, state = world
    cases = [
        ({"event_type": "send", "customer_id": "C1"}, "item_id"),
        ({"event_type": "consent_update", "customer_id": "C1"}, "consent_email"),
        ({"event_type": "page_view", "customer_id": "C1", "consent_ads": True}, "consent_ads"),
        ({"event_type": "Purchase!", "customer_id": "C1", "item_id": "I1"}, "event_type"),
        ({"event_type": "purchase", "customer_id": "C1", "item_id": "I1", "qty": 1}, "qty"),
        (
            {"event_type": "purchase", "customer_id": "C1", "item_id": "I1", "quantity": -1},
            "quantity",
        ),
    ]
    for event, field in cases:
        r = client.post("/v1/events", json={"events": [event]})
        assert r.status_code == 422 and field in r.text, (event, r.text)
    assert state.store.count_events() == 0


def test_a_second_store_on_the_same_file_sees_acknowledged_events(world, tmp_path):  # noqa: F811
    from serving.api.state_reader import FastStateReader
    from serving.state import SQLiteStateStore

    client, _, state = world
    _post(client, {"event_id": "x", "event_type": "purchase", "customer_id": "C4", "item_id": "I3"})
    other = FastStateReader(SQLiteStateStore(state.store.path))  # another worker
    got = other.recent_purchases(NOW - timedelta(days=1), ["C4"])
    assert got[c.ITEM_ID].tolist() == ["I3"] and isinstance(got, pd.DataFrame)
