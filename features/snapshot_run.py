"""Compile (cached) and run the snapshot queries on the shop's feature backend.

The Ibis expressions of :mod:`features.snapshot_tables` are compiled once per query, T,
expansion values, table schemas and backend (building and compiling costs more than
running on small data) and run by :mod:`features.backend` (DuckDB or Spark).
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
from features.backend import backend_of, get_backend
from features.snapshot_tables import (
    _categories_expr,
    _channels_expr,
    _customer_expr,
    _cycle_expr,
)

log = logging.getLogger(__name__)

# Compiled queries are cached per (query, T, expansion values, table names and schemas,
# backend): building and compiling the Ibis expression costs more than running it on
# small data, and the SQL depends on nothing else.
_QUERIES = {
    "categories": lambda t, as_of, cats, chans, b: _categories_expr(t),
    "channels": lambda t, as_of, cats, chans, b: _channels_expr(t, as_of),
    "customer": lambda t, as_of, cats, chans, b: _customer_expr(
        t, as_of, dict(cats), dict(chans), packed_sum_type=b.packed_sum_type
    ),
    "customer_unpacked": lambda t, as_of, cats, chans, b: _customer_expr(
        t, as_of, dict(cats), dict(chans), per_sum=1, packed_sum_type=b.packed_sum_type
    ),
    "customer_category": lambda t, as_of, cats, chans, b: _cycle_expr(t, as_of, c.CATEGORY),
    "customer_item": lambda t, as_of, cats, chans, b: _cycle_expr(t, as_of, c.ITEM_ID),
}


@dataclass(frozen=True)
class _Tables:
    customers: ibis.Table
    items: ibis.Table
    events: ibis.Table
    sends: ibis.Table | None = None


def _signature(name: str, table: ibis.Table) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple((k, str(v)) for k, v in table.schema().items())


@functools.lru_cache(maxsize=64)
def _compiled(
    query: str,
    as_of: datetime,
    categories: tuple[tuple[str, str], ...],
    channels: tuple[tuple[str, str], ...],
    signatures: tuple[tuple[str, tuple[tuple[str, str], ...]], ...],
    backend: str,
) -> str:
    engine = get_backend(backend)
    unbound = [ibis.table(ibis.schema(dict(cols)), name=name) for name, cols in signatures]
    expr = _QUERIES[query](_Tables(*unbound), as_of, categories, channels, engine)
    return engine.compile(expr)


def _run(
    shop: Any,
    query: str,
    as_of: datetime,
    exp: Mapping[str, Mapping[str, str]] | None = None,
) -> pa.Table:
    """Compile (cached) and run one of the snapshot queries on the shop's feature
    backend (:func:`features.backend.backend_of`); returns the rows as Arrow."""
    exp = exp or {}
    engine = backend_of(shop)
    sql = _compiled(
        query,
        as_of,
        tuple(exp.get("category", {}).items()),
        tuple(exp.get("channel", {}).items()),
        tuple(
            _signature(engine.table_name(shop, t), t)
            for t in (shop.customers, shop.items, shop.events, shop.sends)
            if t is not None
        ),
        engine.name,
    )
    return engine.execute(shop, sql)


@contextlib.contextmanager
def _engine_settings(shop: Any) -> Iterator[None]:
    """The feature backend's settings for the duration of one build
    (:meth:`features.backend.FeatureBackend.session`)."""
    with backend_of(shop).session(shop):
        yield
