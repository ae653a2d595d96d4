"""Point in time: nothing at or after T changes the snapshot at T; earlier events do.

Property-based over generated event sets (hypothesis). Snapshots are compared as the
Parquet bytes of all three tables plus the manifest, i.e. byte for byte.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import contract as c
from features import feature_groups as fg
from features.shop import Shop
from features.snapshot import build_snapshot
from features.validation import ValidationReport

T = datetime(2024, 7, 1)
ITEM_IDS = ["coffee", "tea", "pan", "doll"]
ITEMS = pa.table(
    {
        c.ITEM_ID: ITEM_IDS,
        c.TITLE: ["Coffee", "Tea", "Pan", "Doll"],
        c.CATEGORY: ["kitchen", "kitchen", "cookware", "toys"],
        c.REPURCHASABLE: [True, True, False, False],
    }
)
CUSTOMERS = pa.table(
    {
        c.CUSTOMER_ID: ["a", "b", "c", "late"],
        c.CREATED_AT: pa.array(
            [datetime(2023, 1, 1), datetime(2024, 3, 1), datetime(2024, 6, 30, 23), T],
            pa.timestamp("us"),
        ),
        c.BIRTH_DATE: pa.array([None, datetime(1990, 7, 1).date(), None, None], pa.date32()),
    }
)
EVENT_SCHEMA = pa.schema(
    [
        (c.CUSTOMER_ID, pa.string()),
        (c.TS, pa.timestamp("us")),
        (c.EVENT_TYPE, pa.string()),
        (c.ITEM_ID, pa.string()),
        (c.VALUE, pa.float64()),
        (c.CHANNEL, pa.string()),
        (c.SESSION_ID, pa.string()),
        (c.ORDER_ID, pa.string()),
    ]
)
EVENT_TYPES = [*c.CORE_EVENT_TYPES, "wishlist_add"]
HOUR = timedelta(hours=1)


def event(customer: str, hours: int, etype: str, item, cents, channel, session, order) -> dict:
    """An event ``hours`` hours after T (negative: before T)."""
    return {
        c.CUSTOMER_ID: customer,
        c.TS: T + hours * HOUR,
        c.EVENT_TYPE: etype,
        c.ITEM_ID: item,
        c.VALUE: None if cents is None else cents / 100,
        c.CHANNEL: channel,
        c.SESSION_ID: session,
        c.ORDER_ID: order,
    }


def events_at(hours: st.SearchStrategy[int], channels: list[str | None]) -> st.SearchStrategy:
    return st.builds(
        event,
        st.sampled_from(["a", "b", "c", "late"]),
        hours,
        st.sampled_from(EVENT_TYPES),
        st.sampled_from([None, *ITEM_IDS]),
        st.one_of(st.none(), st.integers(0, 20_000)),
        st.sampled_from(channels),
        st.sampled_from([None, "s1", "s2", "s3"]),
        st.sampled_from([None, "o1", "o2", "o3"]),
    )


BEFORE = events_at(st.integers(-24 * 400, -1), [None, "web", "app", "email"])
# at or after T; may use a channel never seen before T ("kiosk") and hit T exactly
AFTER = events_at(st.one_of(st.just(0), st.integers(0, 24 * 400)), [None, "web", "app", "kiosk"])


@pytest.fixture(scope="module")
def con():
    backend = ibis.duckdb.connect(threads=1)
    backend.create_table(c.CUSTOMERS, CUSTOMERS, overwrite=True)
    backend.create_table(c.ITEMS, ITEMS, overwrite=True)
    return backend


def shop_with(con, rows: list[dict]) -> Shop:
    """A shop on the shared connection whose events table holds exactly ``rows``."""
    con.create_table(c.EVENTS, pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), overwrite=True)
    return Shop(
        con=con,
        customers=con.table(c.CUSTOMERS),
        items=con.table(c.ITEMS),
        events=con.table(c.EVENTS),
        sends=None,
        source=Path("memory"),
        report=ValidationReport(),
    )


def snapshot_bytes(con, rows: list[dict]) -> bytes:
    """Parquet bytes of the three snapshot tables at T plus the manifest JSON."""
    snap = build_snapshot(shop_with(con, rows), T)
    out = io.BytesIO()
    for entity in fg.ENTITIES:
        table = pa.Table.from_pandas(snap.table(entity), preserve_index=False)
        pq.write_table(table, out)
    out.write(json.dumps([asdict(s) for s in snap.manifest]).encode())
    return out.getvalue()


def edit(row: dict, how: str, shift_hours: int, cents: int) -> dict | None:
    """Delete, re-type, re-value or move (later) an event at or after T."""
    if how == "delete":
        return None
    new = dict(row)
    if how == "type":
        new[c.EVENT_TYPE] = c.PURCHASE if row[c.EVENT_TYPE] != c.PURCHASE else c.PAGE_VIEW
    elif how == "value":
        new[c.VALUE] = cents / 100
    elif how == "move":
        new[c.TS] = row[c.TS] + shift_hours * HOUR
    elif how == "customer":
        new[c.CUSTOMER_ID] = "a" if row[c.CUSTOMER_ID] != "a" else "b"
    return new


FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FAST
@given(
    before=st.lists(BEFORE, min_size=1, max_size=25),
    after=st.lists(AFTER, min_size=1, max_size=10),
    extra=st.lists(AFTER, max_size=3),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["keep", "delete", "type", "value", "move", "customer"]),
            st.integers(0, 500),
            st.integers(0, 50_000),
        ),
        min_size=10,
        max_size=10,
    ),
)
def test_events_at_or_after_t_never_change_the_snapshot(con, before, after, extra, edits):
    base = snapshot_bytes(con, before + after)
    changed = [
        edit(row, *edits[i % len(edits)]) if edits[i % len(edits)][0] != "keep" else row
        for i, row in enumerate(after)
    ]
    altered = before + [r for r in changed if r is not None] + extra
    assert snapshot_bytes(con, altered) == base


@settings(FAST, max_examples=15)
@given(
    before=st.lists(BEFORE, max_size=20),
    customer=st.sampled_from(["a", "b"]),
    hours=st.integers(-24 * 300, -1),
    cents=st.integers(1, 50_000),
    how=st.sampled_from(["value", "move_after_t", "delete", "move_earlier"]),
)
def test_an_event_before_t_changes_the_snapshot(con, before, customer, hours, cents, how):
    purchase = event(customer, hours, c.PURCHASE, "coffee", cents, "web", None, None)
    base = snapshot_bytes(con, [*before, purchase])
    if how == "value":
        purchase = {**purchase, c.VALUE: (cents + 100) / 100}  # one euro more
    elif how == "move_after_t":
        purchase = {**purchase, c.TS: T}
    elif how == "move_earlier":
        purchase = {**purchase, c.TS: purchase[c.TS] - 24 * HOUR}
    rows = before if how == "delete" else [*before, purchase]
    assert snapshot_bytes(con, rows) != base


def test_snapshot_is_deterministic(con):
    rows = [
        event("a", -30, c.PURCHASE, "coffee", 1234, "web", "s1", "o1"),
        event("a", -2000, c.PURCHASE, "tea", 250, "app", "s2", "o2"),
        event("b", -5, c.PRODUCT_VIEW, "doll", None, "web", "s3", None),
        event("b", 5, c.PURCHASE, "doll", 2000, "kiosk", "s3", None),
    ]
    assert snapshot_bytes(con, rows) == snapshot_bytes(con, list(reversed(rows)))
