"""Column mapping: a raw export with other names becomes the data contract; every
problem (in the mapping or in the data) is reported at the mapping line it comes from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.mapping import MappingError, import_source, load_mapping, validate_import
from klantbeeld.cli import app
from klantbeeld.errors import DataContractError

MAPPING = """\
tables:
  customers:
    derive: first_event
  items:
    constants: {item_id: cd, title: CD, category: music}
  events:
    file: orders.csv
    columns:
      customer_id: Klant
      ts: Datum
      event_type: Soort
      value: Bedrag
    formats:
      ts: "%Y%m%d"
    constants:
      item_id: cd
    event_types:
      order: purchase
"""


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """A CDNOW-style export: customer, YYYYMMDD date, a type column, an amount."""
    src = tmp_path / "raw"
    src.mkdir()
    pd.DataFrame(
        {
            "Klant": ["k1", "k1", "k2", "k3"],
            "Datum": ["19970101", "19970215", "19970103", "19970320"],
            "Soort": ["order", "order", "order", "refund"],
            "Bedrag": ["10.5", "8", "12", "-3"],
        }
    ).to_csv(src / "orders.csv", index=False)
    return src


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def test_import_renames_recodes_parses_and_derives(raw: Path, tmp_path: Path) -> None:
    summary = import_source(_write(tmp_path, MAPPING), raw, tmp_path / "shop")
    assert summary.rows == {"items": 1, "events": 4, "customers": 3}
    assert summary.unmapped_event_types == {"refund": 1}
    shop = validate_import(_write(tmp_path, MAPPING), tmp_path / "shop")
    ev = shop.events.order_by([c.CUSTOMER_ID, c.TS]).to_pandas()
    assert list(ev[c.EVENT_TYPE]) == ["purchase", "purchase", "purchase", "refund"]
    assert list(ev[c.TS].dt.strftime("%Y-%m-%d")) == [
        "1997-01-01", "1997-02-15", "1997-01-03", "1997-03-20"
    ]  # fmt: skip
    assert list(ev[c.VALUE]) == [10.5, 8.0, 12.0, -3.0]
    assert set(ev[c.ITEM_ID]) == {"cd"}
    cu = shop.customers.order_by(c.CUSTOMER_ID).to_pandas()
    assert list(cu[c.CREATED_AT].dt.strftime("%Y-%m-%d")) == [
        "1997-01-01", "1997-01-03", "1997-03-20"
    ]  # fmt: skip


def test_a_dict_mapping_works_like_the_file(raw: Path, tmp_path: Path) -> None:
    import yaml

    summary = import_source(yaml.safe_load(MAPPING), raw, tmp_path / "shop")
    assert summary.rows["events"] == 4


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      ts: Datum\n",
            "      tss: Datum\n",
            r"line 10 \(tables.events.columns.tss\): 'tss' is not a column of the events",
        ),
        ("  items:\n", "  item:\n", r"line 4 \(tables.item\): 'item' is not a contract table"),
        (
            "      event_type: Soort\n",
            "",
            r"line 6 \(tables.events\): the required column\(s\) event_type",
        ),
        (
            "    formats:\n",
            "    format:\n",
            r"line 13 \(tables.events.format\): unknown key 'format'",
        ),
        (
            '      ts: "%Y%m%d"\n',
            '      item_id: "%Y"\n',
            r"line 14 \(tables.events.formats.item_id\): a format for .item_id., which is not",
        ),
    ],
)
def test_mapping_errors_point_at_the_line(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in MAPPING
    with pytest.raises(MappingError, match=expected):
        load_mapping(_write(tmp_path, MAPPING.replace(old, new)))


def test_missing_source_column_and_file_point_at_the_line(raw: Path, tmp_path: Path) -> None:
    bad = MAPPING.replace("value: Bedrag", "value: Amount")
    expected = (
        r"line 12 \(tables.events.columns.value\): source column 'Amount' is not in "
        r"orders.csv; its columns are Klant, Datum"
    )
    with pytest.raises(MappingError, match=expected):
        import_source(_write(tmp_path, bad), raw, tmp_path / "shop")
    with pytest.raises(
        MappingError, match=r"line 7 \(tables.events.file\): source file .*nope.csv"
    ):
        import_source(
            _write(tmp_path, MAPPING.replace("orders.csv", "nope.csv")), raw, tmp_path / "o"
        )
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_contract_violations_name_source_column_and_mapping_line(raw: Path, tmp_path: Path) -> None:
    df = pd.read_csv(raw / "orders.csv", dtype=str)
    df.loc[1, "Datum"] = "15/02/1997"  # not %Y%m%d
    df.to_csv(raw / "orders.csv", index=False)
    path = _write(tmp_path, MAPPING)
    import_source(path, raw, tmp_path / "shop")
    with pytest.raises(DataContractError) as info:
        validate_import(path, tmp_path / "shop")
    (v,) = [v for v in info.value.violations if v.column == c.TS]
    assert v.n_rows == 1 and v.examples == ("'15/02/1997'",)
    assert "[source column 'Datum' of orders.csv read with format '%Y%m%d', " in v.message
    assert f"{path} line 10 (tables.events.columns.ts)]" in v.message
    # lenient: the row is skipped and counted, the rest loads
    shop = validate_import(path, tmp_path / "shop", lenient=True)
    assert shop.report.row_counts["events"] == 3


def test_cli_import(raw: Path, tmp_path: Path) -> None:
    args = ["import", "--mapping", str(_write(tmp_path, MAPPING)), "--source", str(raw),
            "--out", str(tmp_path / "shop")]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "events=4" in r.output and "refund=1" in r.output and "valid" in r.output
    bad = _write(tmp_path, MAPPING.replace("ts: Datum", "tss: Datum"))
    r = CliRunner().invoke(app, [*args[:1], "--mapping", str(bad), *args[3:]])
    assert r.exit_code == 2 and "line 10 (tables.events.columns.tss)" in r.output


def test_example_mapping_round_trips_the_demo_raw_export(tmp_path: Path) -> None:
    from features.demo_shop import generate_demo_shop
    from features.demo_shop.raw_export import EXAMPLE_MAPPING, write_raw_export

    generate_demo_shop(tmp_path / "demo", n_customers=60, seed=1, days=60)
    write_raw_export(tmp_path / "demo", tmp_path / "raw", problems=True)
    mapping = _write(tmp_path, EXAMPLE_MAPPING)
    import_source(mapping, tmp_path / "raw", tmp_path / "shop")
    with pytest.raises(DataContractError) as info:
        validate_import(mapping, tmp_path / "shop")
    found = {(v.column, v.n_rows) for v in info.value.violations}
    assert found == {(c.TS, 3), (c.ITEM_ID, 2)}
    write_raw_export(tmp_path / "demo", tmp_path / "raw", problems=False)
    import_source(mapping, tmp_path / "raw", tmp_path / "shop")
    shop = validate_import(mapping, tmp_path / "shop")
    original = pd.read_parquet(tmp_path / "demo" / "events")
    assert shop.report.row_counts["events"] == len(original)
    assert shop.report.event_type_counts == original[c.EVENT_TYPE].value_counts().to_dict()
