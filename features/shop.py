"""Open a customer-data source as typed, validated Ibis tables.

A *shop* is the four tables of the data contract (``features/contract.py``) read from a
folder of Parquet/CSV files or from a DuckDB database file, checked once on load, and
exposed as Ibis tables on one DuckDB connection. Every later stage (feature snapshots,
labels, training, batch scoring) reads the shop through these tables only, so the engine
behind them is a setting.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import ibis

from features import contract as c
from features.sources import TableSource, find_sources
from features.validation import ValidationReport, validate_and_type
from klantbeeld.errors import ConfigError, DataContractError, Violation

log = logging.getLogger(__name__)

#: Ibis backends that compute feature snapshots (``KLANTBEELD_FEATURE_BACKEND``);
#: see :mod:`features.backend`.
SUPPORTED_BACKENDS = ("duckdb", "pyspark")


def check_backend(backend: str) -> None:
    """Refuse a feature backend klantbeeld cannot run.

    Parameters
    ----------
    backend : str
        ``settings.feature_backend``.

    Raises
    ------
    ConfigError
        ``backend`` is not one of :data:`SUPPORTED_BACKENDS`.
    """
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(
            f"feature backend {backend!r} is not supported (KLANTBEELD_FEATURE_BACKEND); "
            f"expected one of {', '.join(SUPPORTED_BACKENDS)}"
        )


@dataclass(frozen=True)
class Shop:
    """The validated contract tables of one data source.

    Attributes
    ----------
    con : ibis.BaseBackend
        DuckDB backend that holds the tables (views over the input files).
    customers, items, events : ibis.Table
        Typed tables; ids are strings, ``ts``/``created_at`` naive UTC timestamps,
        money and quantities float64, flags boolean.
    sends : ibis.Table | None
        The optional ``sends`` table, ``None`` when the source has none.
    source : Path
        Folder or DuckDB file the shop was read from.
    report : ValidationReport
        Row counts, event types seen, and (lenient mode) every skipped row per rule.
    feature_backend : str
        Engine that computes this shop's feature snapshots (``duckdb`` or ``pyspark``,
        :mod:`features.backend`); the tables themselves stay on DuckDB.
    """

    con: Any
    customers: ibis.Table
    items: ibis.Table
    events: ibis.Table
    sends: ibis.Table | None
    source: Path
    report: ValidationReport = field(repr=False)
    feature_backend: str = "duckdb"

    def table(self, name: str) -> ibis.Table:
        """Return contract table ``name``; raises ``KeyError`` for an unknown or absent table."""
        value = {c.CUSTOMERS: self.customers, c.ITEMS: self.items, c.EVENTS: self.events}.get(
            name, self.sends if name == c.SENDS else None
        )
        if value is None:
            raise KeyError(f"shop from {self.source} has no table {name!r}")
        return value

    def until(self, end: datetime) -> Shop:
        """The shop as if its export had been taken at ``end``: only events and sends with
        ``ts < end`` and customers created before ``end`` (items unchanged).

        The cut tables are DuckDB temp views on the same connection
        (``_kb_until_<end>_<table>``), so later stages read them like the originals.

        Parameters
        ----------
        end : datetime
            Naive UTC instant (exclusive).

        Returns
        -------
        Shop
            Same connection and report, cut tables.
        """
        stamp = f"{end:%Y%m%d%H%M%S}"
        literal = f"TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}'"
        tables: dict[str, ibis.Table | None] = {}
        for name, column in (("customers", c.CREATED_AT), ("events", c.TS), ("sends", c.TS)):
            table = getattr(self, name)
            if table is None:
                tables[name] = None
                continue
            view = f"_kb_until_{stamp}_{name}"
            sql = ibis.to_sql(table, dialect="duckdb")
            self.con.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM ({sql}) "
                f'WHERE "{column}" < {literal}'
            )
            tables[name] = self.con.table(view)
        return replace(self, **tables)  # type: ignore[arg-type]

    def sql(self, query: str) -> Any:
        """Run raw SQL on the shop's DuckDB connection and return a DuckDB relation."""
        return self.con.con.sql(query)


def open_shop(
    path: str | Path,
    *,
    lenient: bool = False,
    now: datetime | None = None,
    threads: int | None = None,
    backend: str = "duckdb",
) -> Shop:
    """Load and validate a shop from a folder of Parquet/CSV files or a DuckDB file.

    Parameters
    ----------
    path : str or Path
        Folder holding ``customers``, ``items``, ``events`` and optionally ``sends``
        (each as ``<name>.parquet``, ``<name>.csv`` or a folder ``<name>/`` of Parquet
        parts), or a DuckDB database file with tables of those names.
    lenient : bool, default False
        False: any violation of the contract raises :class:`DataContractError` listing
        every problem. True: rows that break a row-level rule (unparseable or future
        timestamps, duplicate ids, unknown references, negative quantities, missing
        required values) are skipped and counted in ``Shop.report``; table- and
        column-level problems still raise.
    now : datetime, optional
        Timestamps after this instant (naive UTC) are "in the future"; default: the
        current UTC time.
    threads : int, optional
        DuckDB worker threads; default all cores.
    backend : str, default "duckdb"
        Ibis backend computing the feature snapshots (``settings.feature_backend``):
        ``"duckdb"`` or ``"pyspark"``. Loading and validation always run on DuckDB.

    Returns
    -------
    Shop
        Typed Ibis tables on one DuckDB connection plus the validation report.

    Raises
    ------
    ConfigError
        ``backend`` is not one of :data:`SUPPORTED_BACKENDS`.
    DataContractError
        The source is missing, a table or column is missing, a column has the wrong
        type, or (strict mode) any row breaks the contract.
    """
    check_backend(backend)
    source = Path(path)
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    sources, missing = find_sources(source)
    if missing:
        raise DataContractError(str(source), missing)

    con = ibis.duckdb.connect(threads=threads) if threads else ibis.duckdb.connect()
    raw = con.con
    raw.execute("SET TimeZone = 'UTC'")
    with contextlib.suppress(duckdb.Error):  # refused in Jupyter kernels without ipywidgets
        raw.execute("SET enable_progress_bar = false")  # klantbeeld reports its own progress
    _register_raw_views(raw, sources)
    report = validate_and_type(raw, sources, lenient=lenient, now=now)
    if report.errors:
        raise DataContractError(str(source), report.errors)
    if report.skipped:
        log.warning(
            "lenient mode skipped rows from %s: %s",
            source,
            "; ".join(v.render() for v in report.skipped),
        )
    return Shop(
        con=con,
        customers=con.table(c.CUSTOMERS),
        items=con.table(c.ITEMS),
        events=con.table(c.EVENTS),
        sends=con.table(c.SENDS) if c.SENDS in sources else None,
        source=source,
        report=report,
        feature_backend=backend,
    )


def _register_raw_views(raw: Any, sources: dict[str, TableSource]) -> None:
    """Create one ``raw_<table>`` view per source table on the DuckDB connection."""
    attached = False
    for name, src in sources.items():
        if src.kind == "duckdb":
            if not attached:
                raw.execute(f"ATTACH {_quote_literal(str(src.path))} AS src (READ_ONLY)")
                attached = True
            relation = f"src.main.{_quote_ident(name)}"
        elif src.kind == "parquet":
            files = ", ".join(_quote_literal(str(p)) for p in src.files)
            relation = f"read_parquet([{files}], union_by_name = true)"
        else:  # csv: read every column as text so that bad values can be counted, not lost
            relation = (
                f"read_csv({_quote_literal(str(src.files[0]))}, all_varchar = true, "
                "header = true, auto_detect = true)"
            )
        raw.execute(f"CREATE OR REPLACE VIEW raw_{name} AS SELECT * FROM {relation}")


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote_ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


__all__ = ["Shop", "open_shop", "ValidationReport", "Violation"]
