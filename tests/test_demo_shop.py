"""Demo shop generator and oracle: determinism, contract, invariants, oracle sanity."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from features import contract as c
from features.demo_shop import (
    generate_demo_shop,
    oracle_churn_probability,
    oracle_purchase_probability,
    oracle_repurchase_distribution,
    true_repurchase_cycles,
)
from klantbeeld.errors import ConfigError

N = 1500
END = date(2026, 11, 1)
CUTOFF = datetime(2026, 6, 1)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "shop"
    generate_demo_shop(out, n_customers=N, seed=7, end=END)
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _sql(shop: Path, query: str) -> list[tuple]:
    con = duckdb.connect()
    for name in ("customers", "items", "sends"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{shop}/{name}.parquet')")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{shop}/events/*.parquet')")
    return con.sql(query).fetchall()


def test_same_seed_gives_identical_files_and_other_seed_differs(shop: Path, tmp_path: Path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    generate_demo_shop(again, n_customers=N, seed=7, end=END)
    generate_demo_shop(other, n_customers=N, seed=8, end=END)
    assert _hashes(again) == _hashes(shop)
    assert _hashes(other)["events/part-00000.parquet"] != _hashes(shop)["events/part-00000.parquet"]


def test_summary_counts_match_files_and_every_core_event_type_appears(tmp_path: Path):
    summary = generate_demo_shop(tmp_path / "s", n_customers=400, seed=3, end=END, days=365)
    events = pq.read_table(tmp_path / "s" / "events")
    assert summary.n_events == events.num_rows
    assert summary.n_customers == pq.read_table(tmp_path / "s" / "customers.parquet").num_rows
    assert summary.start == date(2025, 11, 1)
    types = events.column(c.EVENT_TYPE).to_pylist()
    assert {t: types.count(t) for t in set(types)} == {
        k: v for k, v in summary.event_counts.items() if v
    }
    assert set(summary.event_counts) == set(c.CORE_EVENT_TYPES)
    assert all(v > 0 for v in summary.event_counts.values())


def test_contract_columns_and_types(shop: Path):
    events = pq.read_schema(shop / "events" / "part-00000.parquet")
    assert events.field(c.CUSTOMER_ID).type == pa.string()
    assert events.field(c.TS).type == pa.timestamp("us")
    assert events.field(c.VALUE).type == pa.float64()
    assert set(events.names) == {col.name for col in c.EVENTS_SPEC.columns}
    customers = pq.read_schema(shop / "customers.parquet")
    assert set(customers.names) == {col.name for col in c.CUSTOMERS_SPEC.columns}
    assert customers.field(c.CONSENT_EMAIL).type == pa.bool_()
    items = pq.read_schema(shop / "items.parquet")
    assert set(items.names) == {col.name for col in c.ITEMS_SPEC.columns}
    assert set(pq.read_schema(shop / "sends.parquet").names) == {
        col.name for col in c.SENDS_SPEC.columns
    }
    first = pq.read_table(shop / "customers.parquet").column(c.CUSTOMER_ID)[0].as_py()
    assert first == "C0000001"


def test_open_shop_accepts_the_demo_shop(shop: Path):
    from features.shop import open_shop

    loaded = open_shop(shop, now=datetime(2030, 1, 1))
    assert loaded.customers.count().execute() == N
    assert loaded.sends is not None


def test_events_sorted_by_customer_then_time(shop: Path):
    t = pq.read_table(shop / "events").select([c.CUSTOMER_ID, c.TS]).to_pandas()
    key = list(zip(t[c.CUSTOMER_ID], t[c.TS], strict=True))
    assert key == sorted(key)


def test_no_sends_without_email_consent(shop: Path):
    rows = _sql(
        shop,
        "SELECT count(*) FROM sends s JOIN customers u USING (customer_id) "
        "WHERE NOT u.consent_email",
    )
    assert rows == [(0,)]
    assert _sql(shop, "SELECT count(*) > 0 FROM sends") == [(True,)]


def test_no_event_before_creation_or_after_end(shop: Path):
    before = _sql(
        shop,
        "SELECT count(*) FROM events e JOIN customers u USING (customer_id) "
        "WHERE e.ts < u.created_at",
    )
    after = _sql(shop, f"SELECT count(*) FROM events WHERE ts >= TIMESTAMP '{END}'")
    assert before == [(0,)]
    assert after == [(0,)]


def test_purchases_reference_existing_items_and_durables_are_bought_once(shop: Path):
    unknown = _sql(
        shop,
        "SELECT count(*) FROM events e ANTI JOIN items i USING (item_id) "
        "WHERE e.event_type = 'purchase'",
    )
    twice = _sql(
        shop,
        "SELECT count(*) FROM (SELECT customer_id, item_id FROM events "
        "JOIN items USING (item_id) WHERE event_type = 'purchase' AND durable "
        "GROUP BY ALL HAVING count(*) > 1)",
    )
    value_ok = _sql(
        shop,
        "SELECT bool_and(abs(e.value - round(i.price * e.quantity, 2)) < 1e-9) "
        "FROM events e JOIN items i USING (item_id) WHERE e.event_type = 'purchase'",
    )
    assert unknown == [(0,)]
    assert twice == [(0,)]
    assert value_ok == [(True,)]


def test_consumable_rebuy_intervals_centre_on_the_true_cycle(shop: Path):
    cycles = true_repurchase_cycles(shop)
    gaps = _sql(
        shop,
        "SELECT customer_id, item_id, date_diff('day', lag(d) OVER w, d) AS gap FROM "
        "(SELECT DISTINCT customer_id, item_id, ts::DATE AS d FROM events "
        " WHERE event_type = 'purchase') "
        "WINDOW w AS (PARTITION BY customer_id, item_id ORDER BY d)",
    )
    truth = cycles.set_index([c.CUSTOMER_ID, c.ITEM_ID])["cycle_days"]
    ratios = [g / truth[(cu, it)] for cu, it, g in gaps if g is not None and (cu, it) in truth]
    assert len(ratios) > 500
    assert 0.8 <= float(np.median(ratios)) <= 1.2


def test_oracle_probabilities_rank_the_customers_who_then_buy(shop: Path):
    oracle = oracle_purchase_probability(shop, CUTOFF, 30)
    churn = oracle_churn_probability(shop, CUTOFF, 30)
    assert oracle["p_purchase"].between(0, 1).all()
    np.testing.assert_allclose(oracle["p_purchase"] + churn["p_churn"], 1.0)
    buyers = {
        r[0]
        for r in _sql(
            shop,
            "SELECT DISTINCT customer_id FROM events WHERE event_type = 'purchase' "
            f"AND ts > TIMESTAMP '{CUTOFF}' AND ts <= TIMESTAMP '{CUTOFF}' + INTERVAL 30 DAY",
        )
    }
    y = oracle[c.CUSTOMER_ID].isin(buyers).to_numpy()
    assert roc_auc_score(y, oracle["p_purchase"]) > 0.8
    # calibrated: the expected number of buyers is close to the realised number
    assert abs(oracle["p_purchase"].sum() - y.sum()) < 4 * np.sqrt(y.sum())
    created = _sql(shop, f"SELECT count(*) FROM customers WHERE created_at < TIMESTAMP '{CUTOFF}'")
    assert len(oracle) == created[0][0]


def test_oracle_on_some_customers_equals_the_full_oracles_rows(shop: Path):
    full = oracle_churn_probability(shop, CUTOFF, 90)
    ids = list(full[c.CUSTOMER_ID].iloc[::5])
    late = _sql(shop, f"SELECT min(customer_id) FROM customers WHERE created_at >= '{CUTOFF}'")
    assert late[0][0] is not None and late[0][0] not in set(full[c.CUSTOMER_ID])
    asked = [*reversed(ids), "C9999999", "nobody", late[0][0]]
    part = oracle_churn_probability(shop, CUTOFF, 90, customer_ids=asked)
    kept = full[full[c.CUSTOMER_ID].isin(ids)].reset_index(drop=True)
    assert len(kept) == len(ids) == 230
    # unknown ids and a customer created after T are absent; rows ordered by customer_id
    pd.testing.assert_frame_equal(part, kept, check_exact=True)
    # the purchases read from a table holding only these customers' events
    events = pq.read_table(shop / "events")
    mine = events.filter(pc.is_in(events.column(c.CUSTOMER_ID), value_set=pa.array(ids)))
    buy = oracle_purchase_probability(shop, CUTOFF, 30, customer_ids=ids, events=mine)
    full_buy = oracle_purchase_probability(shop, CUTOFF, 30)
    expected = full_buy[full_buy[c.CUSTOMER_ID].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(buy, expected, check_exact=True)
    none = oracle_churn_probability(shop, CUTOFF, 90, customer_ids=["nobody"])
    assert list(none.columns) == [c.CUSTOMER_ID, "p_churn"] and len(none) == 0


def test_oracle_repurchase_distribution_is_a_distribution(shop: Path):
    dist = oracle_repurchase_distribution(shop, CUTOFF, weeks=4)
    weeks = [f"p_week_{w}" for w in range(1, 5)]
    assert list(dist.columns) == [c.CUSTOMER_ID, c.ITEM_ID, *weeks, "p_none", "expected_days"]
    np.testing.assert_allclose(dist[weeks].sum(axis=1) + dist["p_none"], 1.0, atol=1e-9)
    finite = np.isfinite(dist["expected_days"])
    assert (finite == (dist["p_none"] < 0.5)).all()
    assert dist.loc[finite, "expected_days"].between(0, 28).all()


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        generate_demo_shop(foreign, n_customers=10)
    assert (foreign / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_overwrites_a_previous_demo_shop(tmp_path: Path):
    out = tmp_path / "shop"
    generate_demo_shop(out, n_customers=30, seed=1, days=90)
    summary = generate_demo_shop(out, n_customers=50, seed=1, days=90)
    assert pq.read_table(out / "customers.parquet").num_rows == summary.n_customers == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop"]
