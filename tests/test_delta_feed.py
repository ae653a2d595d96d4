"""The audience delta feed ``GET /v1/audiences/{name}/changes``: a session event that lifts
a customer's conversion intent over the audience threshold makes them enter, a consent
withdrawal or an erasure makes a member leave, the holdout never shows, and the cursor of
one answer starts the next. Plus the selection rules on a hand-made index with known
answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_realtime_parity import (  # noqa: F401  (fixture)
    INTENT,
    Clock,
    D,
    client_for,
    fresh_settings,
    realtime_world,
)

from features import contract as c
from serving.api.audience import AudienceIndex
from serving.api.scores import ScoreIndex
from serving.audiences.definitions import AudienceDefinition
from serving.audiences.holdout import in_holdout
from serving.audiences.index import MIN_QUALITY
from serving.online_changes import audience_changes
from serving.online_store import Change

AUDIENCE = "trim"
HOLDOUT = 0.3  # realtime_world's audience_holdout_share


def _yaml(path, min_score: float) -> None:
    path.write_text(
        f"audiences:\n  {AUDIENCE}:\n    score: {INTENT}\n    min_score: {min_score!r}\n"
    )


def _burst(cid: str, start: datetime) -> list[dict]:
    """Three sessions of browsing with an item put in the cart, in the hour before ``start``."""
    out = []
    for s in range(3):
        ts = start - timedelta(minutes=50 - 15 * s)
        for k, kind in enumerate(("page_view", "product_view", "add_to_cart")):
            ev = {"event_type": kind, "customer_id": cid, "session_id": f"{cid}-b{s}"}
            ev["ts"] = (ts + timedelta(minutes=k)).isoformat()
            if kind != "page_view":
                ev["item_id"] = "I00001"
            out.append(ev)
    return out


def _ids(members: list[dict]) -> list[str]:
    return [m["customer_id"] for m in members]


def test_delta_feed_follows_scores_consent_and_erasure(realtime_world, tmp_path):  # noqa: F811
    settings = fresh_settings(realtime_world, tmp_path)
    settings = settings.model_copy(update={"audiences_file": tmp_path / "audiences.yaml"})
    _yaml(settings.audiences_file, 0.5)
    clock = Clock(D + timedelta(hours=12))
    with client_for(settings, clock) as client:
        index = client.app.state.artifacts.audience
        ids = [b.decode() for b in index.scores.ids.tolist()]
        batch = dict(zip(ids, np.asarray(index.scores.score_array(INTENT)).tolist(), strict=True))
        has_id = [
            e is not None or p is not None
            for e, p in zip(index.email_hash, index.phone_hash_e164, strict=True)
        ]
        eligible = index.consent["ads"] & (index.quality >= MIN_QUALITY) & np.array(has_id)
        held = in_holdout(ids, AUDIENCE, HOLDOUT)
        open_ = [cid for k, cid in enumerate(ids) if eligible[k] and not held[k]]
        held_out = [cid for k, cid in enumerate(ids) if eligible[k] and held[k]]
        posted = open_[:25] + held_out[:10]
        events = [ev for cid in posted for ev in _burst(cid, clock.now)]
        r = client.post("/v1/events", json={"events": events})
        assert r.status_code == 200 and r.headers["X-Rescored"] == str(len(posted))
        now = {
            cid: client.get(f"/v1/customers/{cid}/scores").json()["scores"][INTENT]["score"]
            for cid in posted
        }
        # the customer whose score rose most; the audience threshold halfway up its move
        x = max(open_[:25], key=lambda cid: now[cid] - batch[cid])
        assert now[x] > batch[x], "the session burst should raise someone's intent"
        threshold = (now[x] + batch[x]) / 2
        _yaml(settings.audiences_file, threshold)

        first = client.get(f"/v1/audiences/{AUDIENCE}/changes").json()
        assert first["since"] == 0 and first["threshold"] == pytest.approx(threshold)
        assert x in _ids(first["entered"])
        for m in first["entered"]:
            assert now[m["customer_id"]] >= threshold > batch[m["customer_id"]]
            assert m["reason"] == "score" and (m["email_sha256"] or m["phone_sha256"])
        for m in first["left"]:
            assert batch[m["customer_id"]] >= threshold > now[m["customer_id"]]
        crossed = {
            cid for cid in open_[:25] if (now[cid] >= threshold) != (batch[cid] >= threshold)
        }
        assert set(_ids(first["entered"] + first["left"])) == crossed
        assert not set(_ids(first["entered"] + first["left"])) & set(
            held_out
        )  # holdout never shows
        cursor = first["cursor"]
        again = client.get(f"/v1/audiences/{AUDIENCE}/changes", params={"since": cursor}).json()
        assert again["entered"] == again["left"] == [] and again["cursor"] == cursor

        # x withdraws ads consent: x leaves; a member by batch score is erased: it leaves too
        y = next(cid for cid in open_[25:] if batch[cid] >= threshold)
        consent = {"event_type": "consent_update", "customer_id": x, "consent_ads": False}
        assert client.post("/v1/events", json={"events": [consent]}).status_code == 200
        assert client.delete(f"/v1/customers/{y}").status_code == 200
        later = client.get(f"/v1/audiences/{AUDIENCE}/changes", params={"since": cursor}).json()
        assert later["entered"] == []
        assert {m["customer_id"]: m["reason"] for m in later["left"]} == {
            x: "consent",
            y: "erasure",
        }
        gone = next(m for m in later["left"] if m["customer_id"] == y)
        assert gone["email_sha256"] is None and gone["phone_sha256"] is None
        # since the start (cursor 0, or an instant before everything): x never was a member
        full = client.get(
            f"/v1/audiences/{AUDIENCE}/changes", params={"since": "2000-01-01T00:00:00Z"}
        ).json()
        assert x not in _ids(full["entered"] + full["left"]) and y in _ids(full["left"])
        instant = (datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=5)).isoformat()
        assert (
            client.get(f"/v1/audiences/{AUDIENCE}/changes", params={"since": instant}).json()[
                "left"
            ]
            == []
        )
        paged = client.get(f"/v1/audiences/{AUDIENCE}/changes", params={"limit": 1}).json()
        assert paged["more"] is True and paged["cursor"] != full["cursor"]

        assert client.get("/v1/audiences/nope/changes").status_code == 404
        r = client.get(f"/v1/audiences/{AUDIENCE}/changes", params={"since": "yesterday"})
        assert r.status_code == 422 and "since" in r.json()["detail"]
    with client_for(settings, clock, scopes=["scores:read"]) as other:
        assert other.get(f"/v1/audiences/{AUDIENCE}/changes").status_code == 403


# -- the selection rules on a hand-made index ---------------------------------------------
def _index(tmp_path) -> AudienceIndex:
    ids = ["A", "B", "C", "D"]
    pq.write_table(
        pa.table({c.CUSTOMER_ID: ids, f"{INTENT}_score": [0.2, 0.9, 0.2, 0.9]}),
        tmp_path / "s.parquet",
    )
    customers = pd.DataFrame(
        {
            c.CUSTOMER_ID: ids,
            c.CONSENT_EMAIL: [True] * 4,
            c.CONSENT_ADS: [True, True, False, True],
            c.EMAIL: ["ann@example.org", "bob@example.org", "cy@example.org", "dee@example.org"],
            c.PHONE: [None] * 4,
        }
    )
    return AudienceIndex(customers, ScoreIndex.open(tmp_path / "s.parquet", tmp_path / "cache"))


def _change(seq: int, cid: str, kind: str, before, after) -> Change:
    model = INTENT if kind == "score" else None
    return Change(seq, cid, kind, model, before, after, "2026-10-31" if model else None, "t", "t")


def test_rules_consent_threshold_and_holdout_on_a_known_index(tmp_path):
    index = _index(tmp_path)
    definition = AudienceDefinition(name="trim", score=INTENT, min_score=0.5)
    changes = [
        _change(1, "A", "score", 0.2, 0.7),  # crosses up: enters
        _change(2, "C", "score", 0.2, 0.8),  # crosses up, no ads consent: stays out
        _change(3, "B", "score", 0.9, 0.6),  # stays above: no change
        _change(4, "A", "score", 0.7, 0.8),  # only the first row's "before" counts
        _change(5, "Z", "score", 0.1, 0.9),  # not in the batch: in no export
    ]
    online = {"A": 0.8, "B": 0.6, "C": 0.8, "Z": 0.9}
    delta = audience_changes(index, index, definition, 0.0, changes, online, 0, "2026-10-31")
    assert [m.customer_id for m in delta.entered] == ["A"] and delta.left == []
    assert delta.entered[0].email_sha256 == index.email_hash[0] and delta.cursor == 5
    # a score row of another batch day is ignored; the cursor still moves past it
    stale = [Change(6, "D", "score", INTENT, 0.9, 0.1, "2026-10-30", "t", "t")]
    assert audience_changes(index, index, definition, 0.0, stale, {}, 5, "2026-10-31").left == []
    # the holdout: A's draw for "trim" is 0.1265, so a share of 0.13 holds A out
    held = audience_changes(index, index, definition, 0.13, changes, online, 0, "2026-10-31")
    assert held.entered == [] and held.left == []
    kept = audience_changes(index, index, definition, 0.12, changes, online, 0, "2026-10-31")
    assert [m.customer_id for m in kept.entered] == ["A"]
    # consent: B withdraws ads consent online (before: nothing online, table says yes)
    withdrawn = AudienceIndex.__new__(AudienceIndex)
    withdrawn.__dict__.update(index.__dict__)
    withdrawn.consent = {**index.consent, "ads": np.array([True, False, False, True])}
    rows = [_change(7, "B", "consent_ads", None, 0)]
    left = audience_changes(index, withdrawn, definition, 0.0, rows, {}, 6, "2026-10-31")
    assert [(m.customer_id, m.reason) for m in left.left] == [("B", "consent")]
