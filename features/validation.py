"""Validate the contract tables once, on load, and expose them typed.

For each table the raw view ``raw_<table>`` (registered by :mod:`features.shop`) is
checked against :data:`features.contract.TABLE_SPECS` in a single aggregate query, and a
typed relation ``<table>`` is created on the same DuckDB connection:

- table/column level (always an error): missing or empty table, missing required
  column, a column whose stored type cannot hold the expected kind (e.g. numbers where
  timestamps belong);
- row level (an error by default; skipped and counted in lenient mode): missing
  required values, unparseable values, timestamps in the future, duplicate ids,
  references to unknown customers or items, negative quantities or prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from features import contract as c
from features.sources import TableSource
from klantbeeld.errors import Violation

MAX_EXAMPLES = 5

_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
)
_INTEGER = _NUMERIC[:9]


@dataclass
class ValidationReport:
    """What validation found.

    Attributes
    ----------
    errors : list[Violation]
        Problems that stop loading (all of them in strict mode).
    skipped : list[Violation]
        Lenient mode only: row-level violations whose rows were left out, with counts.
    row_counts : dict[str, int]
        Rows per table after validation (after skipping, in lenient mode).
    dropped_rows : dict[str, int]
        Lenient mode: rows left out per table (a row breaking two rules counts once).
    event_type_counts : dict[str, int]
        Events per ``event_type``, core and other types alike (others are kept).
    """

    errors: list[Violation] = field(default_factory=list)
    skipped: list[Violation] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    dropped_rows: dict[str, int] = field(default_factory=dict)
    event_type_counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """Return a short human-readable account of rows loaded and skipped."""
        parts = [f"{t}: {n:,} rows" for t, n in self.row_counts.items()]
        text = "; ".join(parts)
        if self.skipped:
            text += "\nskipped (lenient mode):\n" + "\n".join(
                f"  - {v.render()}" for v in self.skipped
            )
        return text


@dataclass(frozen=True)
class _Check:
    column: str | None
    rule: str
    message: str
    condition: str  # SQL over typed alias t (and kc/ki reference lookups)
    example: str  # column of the flagged relation shown as example value


def validate_and_type(
    raw: Any, sources: dict[str, TableSource], *, lenient: bool, now: datetime
) -> ValidationReport:
    """Check every source table and create the typed relations on ``raw``.

    Parameters
    ----------
    raw : duckdb.DuckDBPyConnection
        Connection holding ``raw_<table>`` views.
    sources : dict[str, TableSource]
        Tables present in the input.
    lenient : bool
        Skip (and count) rows that break row-level rules instead of reporting errors.
    now : datetime
        Naive UTC instant; later timestamps are "in the future".

    Returns
    -------
    ValidationReport
        ``errors`` is empty when the typed relations ``customers``, ``items``,
        ``events`` (and ``sends``) were created.
    """
    report = ValidationReport()
    usable: set[str] = set()
    for name in (c.CUSTOMERS, c.ITEMS, c.EVENTS, c.SENDS):
        if name not in sources:
            continue
        columns = _describe(raw, f"raw_{name}")
        structural = _structural_violations(name, columns)
        if structural:
            report.errors += structural
            continue
        raw.execute(f"CREATE OR REPLACE TEMP VIEW typed_{name} AS {_typed_select(name, columns)}")
        n_rows = raw.execute(f"SELECT count(*) FROM typed_{name}").fetchone()[0]
        if n_rows == 0:
            report.errors.append(
                Violation(name, None, "empty_table", "table has no rows; expected at least one")
            )
            continue
        checks = _row_checks(name, columns, now, usable)
        flagged = _flagged_select(name, checks)
        found = _run_checks(raw, name, checks, flagged)
        bad = [i for i, v in enumerate(found) if v.n_rows]
        keep = ", ".join(f'"{col}"' for col in columns)  # helper _raw_* columns dropped
        if bad and lenient:
            any_bad = " OR ".join(f"f{i}" for i in bad)
            raw.execute(
                f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {keep} FROM ({flagged}) "
                f"WHERE NOT coalesce({any_bad}, false)"
            )
            kept = raw.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            report.skipped += [found[i] for i in bad]
            report.dropped_rows[name] = n_rows - kept
            report.row_counts[name] = kept
        else:
            report.errors += [found[i] for i in bad]
            raw.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {keep} FROM typed_{name}")
            report.row_counts[name] = n_rows
        usable.add(name)  # later tables' references are checked against this one
    if c.EVENTS in usable and not report.errors:
        rows = raw.execute(
            f'SELECT "{c.EVENT_TYPE}", count(*) FROM {c.EVENTS} GROUP BY 1 ORDER BY 1'
        ).fetchall()
        report.event_type_counts = {str(k): int(v) for k, v in rows}
    return report


def _describe(raw: Any, relation: str) -> dict[str, str]:
    rows = raw.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {str(r[0]): str(r[1]).upper() for r in rows}


def _expected(kind: str) -> str:
    return {
        "string": "text",
        "timestamp": "a timestamp (ISO 8601, UTC)",
        "date": "a date (YYYY-MM-DD)",
        "float": "a number",
        "int": "an integer",
        "bool": "a boolean (true/false)",
    }[kind]


def _compatible(kind: str, stored: str) -> bool:
    """Whether a column stored as ``stored`` can hold values of ``kind`` at all."""
    if stored == "VARCHAR" or kind == "string":
        return True
    if kind in ("timestamp", "date"):
        return stored.startswith("TIMESTAMP") or stored == "DATE"
    if kind in ("float", "int"):
        return stored in _NUMERIC or stored.startswith("DECIMAL")
    if kind == "bool":
        return stored == "BOOLEAN" or stored in _INTEGER
    return False


def _structural_violations(table: str, columns: dict[str, str]) -> list[Violation]:
    spec = c.TABLE_SPECS[table]
    out: list[Violation] = []
    for col in spec.columns:
        stored = columns.get(col.name)
        if stored is None:
            if col.required:
                present = ", ".join(columns) or "none"
                out.append(
                    Violation(
                        table,
                        col.name,
                        "missing_column",
                        f"required column is missing (columns present: {present})",
                    )
                )
        elif not _compatible(col.kind, stored):
            out.append(
                Violation(
                    table,
                    col.name,
                    "wrong_type",
                    f"expected {_expected(col.kind)}, found column of type {stored}",
                )
            )
    return out


def _typed_expr(kind: str, name: str, stored: str) -> str:
    q = f'"{name}"'
    if kind == "string":
        return q if stored == "VARCHAR" else f"CAST({q} AS VARCHAR)"
    if kind == "timestamp":
        if stored == "TIMESTAMP":
            return q
        if stored.startswith("TIMESTAMP WITH TIME ZONE") or stored == "TIMESTAMPTZ":
            return f"CAST(timezone('UTC', {q}) AS TIMESTAMP)"
        if stored.startswith("TIMESTAMP") or stored == "DATE":
            return f"CAST({q} AS TIMESTAMP)"
        return f"CAST(timezone('UTC', TRY_CAST({q} AS TIMESTAMPTZ)) AS TIMESTAMP)"
    if kind == "date":
        return q if stored == "DATE" else f"TRY_CAST({q} AS DATE)"
    if kind == "float":
        return q if stored == "DOUBLE" else f"TRY_CAST({q} AS DOUBLE)"
    if kind == "int":
        return q if stored == "BIGINT" else f"TRY_CAST({q} AS BIGINT)"
    if stored == "BOOLEAN":
        return q
    if stored in _INTEGER:
        return f"({q} <> 0)"
    return f"TRY_CAST({q} AS BOOLEAN)"


def _parsed_from_text(col: c.ColumnSpec, columns: dict[str, str]) -> bool:
    """True when ``col`` is stored as text but typed as something else (CSV input)."""
    return col.kind != "string" and columns.get(col.name) == "VARCHAR"


def _typed_select(table: str, columns: dict[str, str]) -> str:
    spec = c.TABLE_SPECS[table]
    parts = []
    for name, stored in columns.items():
        col = spec.column(name)
        parts.append(
            f'"{name}"' if col is None else f'{_typed_expr(col.kind, name, stored)} AS "{name}"'
        )
    parts += [
        f'"{col.name}" AS "_raw_{col.name}"'
        for col in spec.columns
        if col.name in columns and _parsed_from_text(col, columns)
    ]
    return f"SELECT {', '.join(parts)} FROM raw_{table}"


def _row_checks(
    table: str, columns: dict[str, str], now: datetime, usable: set[str]
) -> list[_Check]:
    spec = c.TABLE_SPECS[table]
    checks: list[_Check] = []
    for col in spec.columns:
        if col.name not in columns:
            continue
        q = f't."{col.name}"'
        from_text = _parsed_from_text(col, columns)
        if col.required:
            cond = f"{q} IS NULL" + (f' AND t."_raw_{col.name}" IS NULL' if from_text else "")
            checks.append(
                _Check(col.name, "missing_value", "required value is missing", cond, "NULL")
            )
        if from_text:
            checks.append(
                _Check(
                    col.name,
                    "unparseable",
                    f"expected {_expected(col.kind)}, could not parse",
                    f't."_raw_{col.name}" IS NOT NULL AND {q} IS NULL',
                    f'"_raw_{col.name}"',
                )
            )
        if col.kind == "timestamp":
            checks.append(
                _Check(
                    col.name,
                    "future_timestamp",
                    f"timestamp is in the future (after {now:%Y-%m-%d %H:%M} UTC)",
                    f"{q} > TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}'",
                    f'"{col.name}"',
                )
            )
    if spec.unique_key and spec.unique_key in columns:
        key = spec.unique_key
        checks.append(
            _Check(
                key,
                "duplicate_id",
                "id is not unique (repeats after the first)",
                f't."{key}" IS NOT NULL AND row_number() OVER (PARTITION BY t."{key}") > 1',
                f'"{key}"',
            )
        )
    if table in (c.EVENTS, c.SENDS) and c.CUSTOMERS in usable:
        checks.append(
            _Check(
                c.CUSTOMER_ID,
                "unknown_customer",
                "refers to a customer_id not in customers",
                f't."{c.CUSTOMER_ID}" IS NOT NULL AND kc."{c.CUSTOMER_ID}" IS NULL',
                f'"{c.CUSTOMER_ID}"',
            )
        )
    if table in (c.EVENTS, c.SENDS) and c.ITEMS in usable and c.ITEM_ID in columns:
        checks.append(
            _Check(
                c.ITEM_ID,
                "unknown_item",
                "refers to an item_id not in items",
                f't."{c.ITEM_ID}" IS NOT NULL AND ki."{c.ITEM_ID}" IS NULL',
                f'"{c.ITEM_ID}"',
            )
        )
    for col_name, rule in ((c.QUANTITY, "negative_quantity"), (c.PRICE, "negative_price")):
        if col_name in columns and spec.column(col_name) is not None:
            checks.append(
                _Check(col_name, rule, "must be >= 0", f't."{col_name}" < 0', f'"{col_name}"')
            )
    return checks


def _flagged_select(table: str, checks: list[_Check]) -> str:
    """SELECT over ``typed_<table>`` adding one boolean column ``f<i>`` per check."""
    joins = ""
    rules = {ch.rule for ch in checks}
    if "unknown_customer" in rules:
        joins += (
            f' LEFT JOIN (SELECT DISTINCT "{c.CUSTOMER_ID}" FROM {c.CUSTOMERS}) kc '
            f'ON t."{c.CUSTOMER_ID}" = kc."{c.CUSTOMER_ID}"'
        )
    if "unknown_item" in rules:
        joins += (
            f' LEFT JOIN (SELECT DISTINCT "{c.ITEM_ID}" FROM {c.ITEMS}) ki '
            f'ON t."{c.ITEM_ID}" = ki."{c.ITEM_ID}"'
        )
    flags = "".join(f", ({ch.condition}) AS f{i}" for i, ch in enumerate(checks))
    return f"SELECT t.*{flags} FROM typed_{table} t{joins}"


def _run_checks(raw: Any, table: str, checks: list[_Check], flagged: str) -> list[Violation]:
    """Count every check in one pass; fetch examples only for the checks that fail."""
    if not checks:
        return []
    counts_sql = ", ".join(f"count(*) FILTER (WHERE f{i})" for i in range(len(checks)))
    counts = raw.execute(f"SELECT {counts_sql} FROM ({flagged})").fetchone()
    out: list[Violation] = []
    for i, (check, n) in enumerate(zip(checks, counts, strict=True)):
        examples: tuple[str, ...] = ()
        if n:
            rows = raw.execute(
                f"SELECT DISTINCT CAST({check.example} AS VARCHAR) AS e FROM ({flagged}) "
                f"WHERE f{i} ORDER BY e NULLS FIRST LIMIT {MAX_EXAMPLES}"
            ).fetchall()
            examples = tuple("NULL" if r[0] is None else repr(r[0]) for r in rows)
        out.append(
            Violation(table, check.column, check.rule, check.message, int(n), examples, True)
        )
    return out
