"""Data-contract validation: every violation is reported with table, column, count, examples."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.shop import open_shop
from klantbeeld.cli import app
from klantbeeld.errors import DataContractError

NOW = datetime(2026, 11, 1)


def _customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.CUSTOMER_ID: ["c1", "c2", "c3"],
            c.CREATED_AT: pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"]),
            c.CONSENT_EMAIL: [True, False, True],
        }
    )


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.ITEM_ID: ["i1", "i2"],
            c.TITLE: ["Flour", "Mixer"],
            c.CATEGORY: ["baking", "kitchen"],
            c.PRICE: [2.5, 99.0],
        }
    )


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.CUSTOMER_ID: ["c1", "c2", "c3", "c1"],
            c.TS: pd.to_datetime(
                ["2025-05-01 10:00", "2025-05-02 11:00", "2025-06-01 09:30", "2025-06-02 08:00"]
            ),
            c.EVENT_TYPE: ["product_view", "purchase", "page_view", "purchase"],
            c.ITEM_ID: ["i1", "i2", None, "i1"],
            c.QUANTITY: [None, 1.0, None, 2.0],
        }
    )


def write_shop(
    folder: Path,
    customers: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    fmt: str = "parquet",
) -> Path:
    """Write a tiny valid shop (or the given replacements) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        c.CUSTOMERS: _customers() if customers is None else customers,
        c.ITEMS: _items() if items is None else items,
        c.EVENTS: _events() if events is None else events,
    }
    for name, frame in tables.items():
        if fmt == "parquet":
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def violations(path: Path) -> dict[tuple[str, str | None, str], object]:
    with pytest.raises(DataContractError) as info:
        open_shop(path, now=NOW)
    return {(v.table, v.column, v.rule): v for v in info.value.violations}


def test_valid_shop_loads_typed(tmp_path: Path) -> None:
    shop = open_shop(write_shop(tmp_path), now=NOW)
    assert shop.report.row_counts == {c.CUSTOMERS: 3, c.ITEMS: 2, c.EVENTS: 4}
    assert shop.report.event_type_counts == {"page_view": 1, "product_view": 1, "purchase": 2}
    schema = shop.events.schema()
    assert str(schema[c.TS]).startswith("timestamp")
    assert str(schema[c.QUANTITY]) == "float64"
    assert shop.sends is None


def test_csv_input_parses_to_the_same_types(tmp_path: Path) -> None:
    shop = open_shop(write_shop(tmp_path, fmt="csv"), now=NOW)
    events = shop.events.order_by([c.TS]).execute()
    assert list(events[c.QUANTITY].fillna(-1)) == [-1.0, 1.0, -1.0, 2.0]
    assert events[c.TS].iloc[0] == pd.Timestamp("2025-05-01 10:00")
    assert bool(shop.customers.execute()[c.CONSENT_EMAIL].iloc[1]) is False


def test_events_as_folder_of_parquet_parts(tmp_path: Path) -> None:
    write_shop(tmp_path)
    (tmp_path / "events.parquet").unlink()
    parts = tmp_path / c.EVENTS
    parts.mkdir()
    ev = _events()
    ev.iloc[:2].to_parquet(parts / "part-00000.parquet", index=False)
    ev.iloc[2:].to_parquet(parts / "part-00001.parquet", index=False)
    assert open_shop(tmp_path, now=NOW).report.row_counts[c.EVENTS] == 4


def test_duckdb_file_input(tmp_path: Path) -> None:
    db = tmp_path / "cdp.duckdb"
    with duckdb.connect(str(db)) as con:
        for name, frame in (
            (c.CUSTOMERS, _customers()),
            (c.ITEMS, _items()),
            (c.EVENTS, _events()),
        ):
            con.register("frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            con.unregister("frame")
    shop = open_shop(db, now=NOW)
    assert shop.events.count().execute() == 4


def test_missing_source_and_table(tmp_path: Path) -> None:
    found = violations(tmp_path / "nope")
    assert "does not exist" in found[("(source)", None, "missing_source")].message
    write_shop(tmp_path)
    (tmp_path / "items.parquet").unlink()
    found = violations(tmp_path)
    v = found[(c.ITEMS, None, "missing_table")]
    assert "items.parquet, items.csv or a folder items/" in v.message


def test_missing_column_names_table_and_column(tmp_path: Path) -> None:
    write_shop(tmp_path, events=_events().drop(columns=[c.EVENT_TYPE]))
    with pytest.raises(DataContractError) as info:
        open_shop(tmp_path, now=NOW)
    assert "events.event_type: required column is missing" in str(info.value)


def test_wrong_type(tmp_path: Path) -> None:
    ev = _events()
    ev[c.TS] = [1, 2, 3, 4]  # epoch-ish integers where timestamps belong
    write_shop(tmp_path, events=ev)
    v = violations(tmp_path)[(c.EVENTS, c.TS, "wrong_type")]
    assert "expected a timestamp" in v.message and "BIGINT" in v.message


def test_unparseable_and_future_timestamps(tmp_path: Path) -> None:
    ev = _events().astype({c.TS: str})
    ev.loc[1, c.TS] = "yesterday"
    ev.loc[2, c.TS] = "2031-01-01 00:00:00"
    write_shop(tmp_path, events=ev, fmt="csv")
    found = violations(tmp_path)
    bad = found[(c.EVENTS, c.TS, "unparseable")]
    assert (bad.n_rows, bad.examples) == (1, ("'yesterday'",))
    future = found[(c.EVENTS, c.TS, "future_timestamp")]
    assert future.n_rows == 1 and "2031-01-01" in future.examples[0]
    assert "events.ts: timestamp is in the future (after 2026-11-01 00:00 UTC) (1 row)" in (
        future.render()
    )


def test_duplicate_ids(tmp_path: Path) -> None:
    cust = pd.concat([_customers(), _customers().iloc[[0, 0]]], ignore_index=True)
    write_shop(tmp_path, customers=cust)
    v = violations(tmp_path)[(c.CUSTOMERS, c.CUSTOMER_ID, "duplicate_id")]
    assert (v.n_rows, v.examples) == (2, ("'c1'",))


def test_unknown_customer_and_item_references(tmp_path: Path) -> None:
    ev = _events()
    ev.loc[0, c.CUSTOMER_ID] = "ghost"
    ev.loc[3, c.ITEM_ID] = "i404"
    write_shop(tmp_path, events=ev)
    found = violations(tmp_path)
    assert found[(c.EVENTS, c.CUSTOMER_ID, "unknown_customer")].examples == ("'ghost'",)
    item = found[(c.EVENTS, c.ITEM_ID, "unknown_item")]
    assert (item.n_rows, item.examples) == (1, ("'i404'",))


def test_negative_quantity(tmp_path: Path) -> None:
    ev = _events()
    ev.loc[1, c.QUANTITY] = -3.0
    write_shop(tmp_path, events=ev)
    v = violations(tmp_path)[(c.EVENTS, c.QUANTITY, "negative_quantity")]
    assert (v.n_rows, v.message, v.examples) == (1, "must be >= 0", ("'-3.0'",))


def test_empty_table(tmp_path: Path) -> None:
    write_shop(tmp_path, events=_events().iloc[:0])
    v = violations(tmp_path)[(c.EVENTS, None, "empty_table")]
    assert "no rows" in v.message


def test_every_violation_is_reported_at_once(tmp_path: Path) -> None:
    ev = _events()
    ev.loc[0, c.CUSTOMER_ID] = "ghost"
    ev.loc[1, c.QUANTITY] = -1.0
    cust = pd.concat([_customers(), _customers().iloc[[1]]], ignore_index=True)
    write_shop(tmp_path, customers=cust, events=ev)
    rules = {k[2] for k in violations(tmp_path)}
    assert rules == {"duplicate_id", "unknown_customer", "negative_quantity"}


def test_examples_are_capped_at_five(tmp_path: Path) -> None:
    ev = pd.concat([_events()] * 3, ignore_index=True)
    ev[c.CUSTOMER_ID] = [f"ghost{i}" for i in range(len(ev))]
    write_shop(tmp_path, events=ev)
    v = violations(tmp_path)[(c.EVENTS, c.CUSTOMER_ID, "unknown_customer")]
    assert v.n_rows == 12 and len(v.examples) == 5


def test_lenient_mode_skips_and_counts(tmp_path: Path) -> None:
    ev = _events()
    ev.loc[0, c.CUSTOMER_ID] = "ghost"
    ev.loc[1, c.QUANTITY] = -1.0
    write_shop(tmp_path, events=ev)
    shop = open_shop(tmp_path, lenient=True, now=NOW)
    assert shop.report.row_counts[c.EVENTS] == 2
    assert shop.report.dropped_rows == {c.EVENTS: 2}
    assert {(v.rule, v.n_rows) for v in shop.report.skipped} == {
        ("unknown_customer", 1),
        ("negative_quantity", 1),
    }
    assert shop.events.count().execute() == 2
    assert "skipped (lenient mode)" in shop.report.summary()


def test_lenient_mode_still_refuses_structural_problems(tmp_path: Path) -> None:
    write_shop(tmp_path, items=_items().drop(columns=[c.CATEGORY]))
    with pytest.raises(DataContractError, match="items.category: required column is missing"):
        open_shop(tmp_path, lenient=True, now=NOW)


def test_other_event_types_are_kept_and_counted(tmp_path: Path) -> None:
    ev = _events()
    ev.loc[2, c.EVENT_TYPE] = "store_visit"
    shop = open_shop(write_shop(tmp_path, events=ev), now=NOW)
    assert shop.report.event_type_counts["store_visit"] == 1


def test_cli_reports_violations_without_traceback(tmp_path: Path) -> None:
    ev = _events()
    ev.loc[0, c.CUSTOMER_ID] = "ghost"
    write_shop(tmp_path, events=ev)
    result = CliRunner().invoke(app, ["validate", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "events.customer_id: refers to a customer_id not in customers (1 row)" in result.output
    ok = CliRunner().invoke(app, ["validate", "--data", str(tmp_path), "--lenient"])
    assert ok.exit_code == 0, ok.output
    assert "events: 3 rows" in ok.output
