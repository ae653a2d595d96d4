"""Batch export: one line per recipient, consent enforced, atomic replace on success only."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from klantbeeld.settings import Settings
from serving.context import RecContext
from serving.export import export_recommendations, read_customer_ids
from serving.state import SQLiteStateStore

NOW = datetime(2026, 3, 1)

ITEMS = pd.DataFrame(
    {
        "item_id": ["cake", "whisk", "doll", "ball"],
        "title": ['Cake "deluxe"', "Whisk", "Doll", "Ball"],
        "category": ["baking", "baking", "toys", "toys"],
        "price": [4.5, 12.0, 30.0, 8.0],
        "url": ["https://s/cake", "https://s/whisk", "https://s/doll", "https://s/ball"],
        "image_url": ["https://i/cake.jpg", None, "https://i/doll.jpg", "https://i/ball.jpg"],
    }
)
CUSTOMERS = pd.DataFrame({"customer_id": ["a", "b", "c"], "consent_email": [True, False, True]})
EVENTS = pd.DataFrame(
    {
        "customer_id": ["a", "c", "c", "a", "b"],
        "ts": [NOW - timedelta(days=d) for d in (2, 3, 4, 5, 1)],
        "event_type": ["purchase", "purchase", "purchase", "product_view", "purchase"],
        "item_id": ["doll", "doll", "cake", "whisk", "ball"],
    }
)


class FakeModel:
    """Candidates from a fixed table; records which customers it was asked about."""

    def __init__(self, table: pd.DataFrame, fail_on_call: int | None = None) -> None:
        self.table = table
        self.asked: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def candidates(self, customer_ids, n_per_source=50):
        self.asked.append(list(customer_ids))
        if self.fail_on_call is not None and len(self.asked) == self.fail_on_call:
            raise RuntimeError("candidate store went away")
        return self.table[self.table["customer_id"].isin(customer_ids)]

    def rank(self, candidates):
        return candidates.sort_values(["customer_id", "score"], ascending=[True, False])


CANDS = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "c", "b"],
        "item_id": ["whisk", "ball", "doll", "ball", "ball"],
        "score": [0.9, 0.8, 0.7, 0.6, 0.5],
        "source": ["als", "item_knn", "als", "recently_viewed", "als"],
        "reason": ["for_you", "similar_to:doll", "for_you", "viewed", "for_you"],
    }
)


@pytest.fixture()
def ctx() -> RecContext:
    return RecContext.from_events(NOW, CUSTOMERS, ITEMS, EVENTS)


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_ndjson_one_line_per_eligible_recipient(ctx, settings, tmp_path):
    out = tmp_path / "out" / "newsletter.ndjson"
    model = FakeModel(CANDS)
    summary = export_recommendations(
        settings, "newsletter", "all", out, "ndjson", context=ctx, model=model, show_progress=False
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["customer_id"] for x in lines] == ["a", "c"]
    a = lines[0]
    assert (a["placement"], a["eligible"], a["reason"], a["content_block"]) == (
        "newsletter",
        True,
        None,
        "toys",  # doll bought (toys 3) outweighs the whisk viewed (baking 1)
    )
    # a bought the doll (2 days ago, < 90 days) -> out; whisk, ball from the model, then
    # fallback: popular in a's segment (toys: doll, ball -- both used), then overall: cake.
    assert [(i["rank"], i["item_id"], i["reason"]) for i in a["items"]] == [
        (1, "whisk", "for_you"),
        (2, "ball", "similar_to:doll"),
        (3, "cake", "popular_in:all"),
    ]
    assert a["items"][0] == {
        "rank": 1,
        "item_id": "whisk",
        "score": 0.9,
        "reason": "for_you",
        "title": "Whisk",
        "url": "https://s/whisk",
        "image_url": None,
        "price": 12.0,
        "category": "baking",
    }
    c = lines[1]
    # c's candidate comes from recently_viewed, a newsletter source; c bought doll and cake.
    assert [(i["item_id"], i["reason"]) for i in c["items"]] == [("ball", "viewed")]
    # b has no email consent: never asked from the model, not in the file, counted.
    assert model.asked == [["a", "c"]]
    assert (summary.n_recipients, summary.n_eligible, summary.n_lines) == (3, 2, 2)
    assert summary.not_eligible_by_reason == {"no_email_consent": 1}
    assert summary.n_items == len(a["items"]) + len(c["items"])


def test_title_with_quotes_is_valid_json(ctx, settings, tmp_path):
    out = tmp_path / "web.ndjson"
    export_recommendations(settings, "web_for_you", "all", out, context=ctx, show_progress=False)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    titles = {i["title"] for line in lines for i in line["items"]}
    assert 'Cake "deluxe"' in titles
    assert [x["customer_id"] for x in lines] == ["a", "b", "c"]  # web needs no email consent


def test_csv_wide_rows_and_not_eligible_rows_on_request(ctx, settings, tmp_path):
    out = tmp_path / "n.csv"
    summary = export_recommendations(
        settings,
        "newsletter",
        "all",
        out,
        "csv",
        context=ctx,
        model=FakeModel(CANDS),
        include_not_eligible=True,
        show_progress=False,
    )
    rows = list(csv.DictReader(out.open()))
    assert [r["customer_id"] for r in rows] == ["a", "b", "c"]
    a, b, _ = rows
    assert (a["eligible"], a["n_items"], a["content_block"]) == ("true", "3", "toys")
    assert (a["item_1_id"], a["item_1_title"], a["item_1_price"], a["item_1_reason"]) == (
        "whisk",
        "Whisk",
        "12",
        "for_you",
    )
    assert a["item_3_id"] == "cake" and a["item_4_id"] == "" and "item_6_id" in a
    assert "item_7_id" not in a
    assert (b["eligible"], b["reason"], b["n_items"], b["item_1_id"]) == (
        "false",
        "no_email_consent",
        "0",
        "",
    )
    assert summary.n_lines == 3


def test_failure_mid_way_leaves_previous_file_intact(ctx, settings, tmp_path):
    out = tmp_path / "n.ndjson"
    out.write_text("previous\n")
    model = FakeModel(CANDS, fail_on_call=2)
    with pytest.raises(RuntimeError, match="candidate store went away"):
        export_recommendations(
            settings,
            "newsletter",
            "all",
            out,
            context=ctx,
            model=model,
            chunk_size=1,
            show_progress=False,
        )
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.ndjson"]  # no temp left behind
    # A successful run then replaces it.
    export_recommendations(
        settings, "newsletter", "all", out, context=ctx, chunk_size=1, show_progress=False
    )
    assert out.read_text().count("\n") == 2


def test_customers_file_unknown_ids_and_duplicates(ctx, settings, tmp_path):
    ids = tmp_path / "ids.csv"
    ids.write_text("customer_id,segment\nc,x\nzz,y\nc,x\n")
    assert read_customer_ids(ids) == ["c", "zz"]
    plain = tmp_path / "ids.txt"
    plain.write_text("a\n\nb\n")
    assert read_customer_ids(plain) == ["a", "b"]
    out = tmp_path / "o.ndjson"
    summary = export_recommendations(
        settings, "newsletter", ids, out, context=ctx, show_progress=False
    )
    assert summary.not_eligible_by_reason == {"unknown_customer": 1}
    assert [json.loads(x)["customer_id"] for x in out.read_text().splitlines()] == ["c"]


def test_recorded_sends_are_excluded_next_time(ctx, settings, tmp_path):
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    out = tmp_path / "o.ndjson"
    first = export_recommendations(
        settings,
        "newsletter",
        Path(_ids(tmp_path, ["a"])),
        out,
        context=ctx,
        model=FakeModel(CANDS),
        state=store,
        record_sends=True,
        now=NOW,
        show_progress=False,
    )
    items1 = [i["item_id"] for i in json.loads(out.read_text())["items"]]
    assert items1 == ["whisk", "ball", "cake"]
    assert first.n_items == 3 and len(store.recent_sends(NOW - timedelta(1))) == 3
    second = export_recommendations(
        settings,
        "newsletter",
        Path(_ids(tmp_path, ["a"])),
        out,
        context=ctx,
        model=FakeModel(CANDS),
        state=store,
        now=NOW + timedelta(days=1),
        show_progress=False,
    )
    # Everything a could get was sent yesterday (7-day rule): nothing left to send.
    assert out.read_text() == ""
    assert second.not_eligible_by_reason == {"no_items": 1}


def _ids(tmp_path: Path, ids: list[str]) -> Path:
    p = tmp_path / "list.txt"
    p.write_text("\n".join(ids) + "\n")
    return p


def test_bad_format_and_placement(ctx, settings, tmp_path):
    from klantbeeld.errors import ConfigError

    with pytest.raises(ConfigError, match="fmt must be"):
        export_recommendations(settings, "newsletter", "all", tmp_path / "x", "xml", context=ctx)
    with pytest.raises(ConfigError, match="'nope' is not declared"):
        export_recommendations(settings, "nope", "all", tmp_path / "x", context=ctx)
