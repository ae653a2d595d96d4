"""Batch exports honour what the API recorded online: erased customers are left out,
consent withdrawn through ``POST /v1/events`` counts."""

from __future__ import annotations

import json
from datetime import timedelta

from test_export import CANDS, NOW, FakeModel, ctx, settings  # noqa: F401  (fixtures)

from serving.export import export_recommendations
from serving.state import SQLiteStateStore


def _exported(settings, ctx, tmp_path, state) -> list[str]:  # noqa: F811
    out = tmp_path / "newsletter.ndjson"
    export_recommendations(
        settings,
        "newsletter",
        "all",
        out,
        context=ctx,
        model=FakeModel(CANDS),
        state=state,
        show_progress=False,
        include_not_eligible=True,
    )
    return [
        (x["customer_id"], x["eligible"], x["reason"])
        for x in map(json.loads, out.read_text().splitlines())
    ]


def test_export_leaves_out_erased_and_withdrawn_customers(ctx, settings, tmp_path):  # noqa: F811
    state = SQLiteStateStore(tmp_path / "state.sqlite")
    before = _exported(settings, ctx, tmp_path, state)
    assert [cid for cid, ok, _ in before if ok] == ["a", "c"]
    state.erase_customer("a", NOW)
    state.record_events(
        [
            {
                "customer_id": "c",
                "ts": NOW + timedelta(minutes=1),
                "event_type": "consent_update",
                "consent_email": False,
            }
        ],
        NOW,
    )
    after = _exported(settings, ctx, tmp_path, state)
    assert "a" not in [cid for cid, _, _ in after]
    assert ("c", False, "no_email_consent") in after
    assert len(after) == len(before) - 1
