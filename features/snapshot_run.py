"""Compile (cached) and run the snapshot queries, and turn their rows into typed pandas tables.

The Ibis expressions of :mod:`features.snapshot_tables` are compiled once per query, T,
expansion values, table schemas and SQL dialect (building and compiling costs more than
running on small data) and run on the shop's engine.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ibis
import pyarrow as pa

from features import contract as c
from features.snapshot_tables import (
    _categories_expr,
    _channels_expr,
    _customer_expr,
    _cycle_expr,
)

log = logging.getLogger(__name__)

# Compiled queries are cached per (query, T, expansion values, table names and schemas,
# dialect): building and compiling the Ibis expression costs more than running it on
# small data, and the SQL depends on nothing else.
_QUERIES = {
    "categories": lambda t, as_of, cats, chans: _categories_expr(t),
    "channels": lambda t, as_of, cats, chans: _channels_expr(t, as_of),
    "customer": lambda t, as_of, cats, chans: _customer_expr(t, as_of, dict(cats), dict(chans)),
    "customer_unpacked": lambda t, as_of, cats, chans: _customer_expr(
        t, as_of, dict(cats), dict(chans), per_sum=1
    ),
    "customer_category": lambda t, as_of, cats, chans: _cycle_expr(t, as_of, c.CATEGORY),
    "customer_item": lambda t, as_of, cats, chans: _cycle_expr(t, as_of, c.ITEM_ID),
}


@dataclass(frozen=True)
class _Tables:
    customers: ibis.Table
    items: ibis.Table
    events: ibis.Table
    sends: ibis.Table | None = None


def _signature(table: ibis.Table) -> tuple[str, tuple[tuple[str, str], ...]]:
    return table.get_name(), tuple((k, str(v)) for k, v in table.schema().items())


@functools.lru_cache(maxsize=64)
def _compiled(
    query: str,
    as_of: datetime,
    categories: tuple[tuple[str, str], ...],
    channels: tuple[tuple[str, str], ...],
    signatures: tuple[tuple[str, tuple[tuple[str, str], ...]], ...],
    dialect: str,
) -> str:
    unbound = [ibis.table(ibis.schema(dict(cols)), name=name) for name, cols in signatures]
    expr = _QUERIES[query](_Tables(*unbound), as_of, categories, channels)
    return str(ibis.to_sql(expr, dialect=dialect))


def _run(
    shop: Any,
    query: str,
    as_of: datetime,
    exp: Mapping[str, Mapping[str, str]] | None = None,
) -> pa.Table:
    """Compile (cached) and run one of the snapshot queries on the shop's backend."""
    exp = exp or {}
    sql = _compiled(
        query,
        as_of,
        tuple(exp.get("category", {}).items()),
        tuple(exp.get("channel", {}).items()),
        tuple(
            _signature(t)
            for t in (shop.customers, shop.items, shop.events, shop.sends)
            if t is not None
        ),
        shop.con.name,
    )
    if shop.con.name == "duckdb":
        # ibis 12's Backend.sql() calls DuckDB's removed fetch_arrow_table(); go direct
        return shop.con.con.sql(sql).to_arrow_table()
    return shop.con.sql(sql, dialect=shop.con.name).to_pyarrow()  # pragma: no cover


# DuckDB settings for the duration of a build: results need not keep insertion order
# (every table is sorted by its keys afterwards), which lets DuckDB collect results and
# build intermediates in parallel. (The progress bar is switched off once, in open_shop:
# switching it back on fails in Jupyter kernels without ipywidgets.)
_DUCKDB_SETTINGS = {"preserve_insertion_order": "false"}


@contextlib.contextmanager
def _engine_settings(shop: Any) -> Iterator[None]:
    """Apply :data:`_DUCKDB_SETTINGS` on the shop's DuckDB connection, restore afterwards."""
    if shop.con.name != "duckdb":  # pragma: no cover - other engines keep their settings
        yield
        return
    raw = shop.con.con
    old = {k: raw.execute("SELECT current_setting(?)", [k]).fetchone()[0] for k in _DUCKDB_SETTINGS}
    for k, v in _DUCKDB_SETTINGS.items():
        raw.execute(f"SET {k} = {v}")
    try:
        yield
    finally:
        for k, v in old.items():
            raw.execute(f"SET {k} = {str(v).lower()}")
