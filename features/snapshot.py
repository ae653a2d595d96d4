"""Point-in-time feature snapshots computed as Ibis expressions.

:func:`build_snapshot` turns a :class:`~features.shop.Shop` and a time T into three
tables (customer, customer x category, customer x item) whose columns are declared in
:mod:`features.feature_groups`. Point in time: only events with ``ts < T`` and customers
with ``created_at < T`` are read; per-item median cycles come from the same history.

Work split: the customer table is one Ibis expression — an event pass over integer codes
(event type, channel, category compared once per row; mutually exclusive counts packed
into shared integer sums, see :class:`features.snapshot_passes._Counters`), a session
pass and an order pass, joined to the customers, with all per-customer arithmetic (days
between timestamps, ratios, lifecycle rule) computed in the engine; pandas receives
finished columns. Money is summed in whole cents and interval moments in whole seconds,
so results do not depend on the order in which threads combine partial sums: the same
data give the same bytes. :func:`customer_features` builds the customer table alone.

Modules, one job each: :mod:`features.snapshot_passes` (the event, session, order and
send passes as Ibis expressions), :mod:`features.snapshot_tables` (the customer and
cycle tables built from them, and their finishing into typed pandas),
:mod:`features.snapshot_run` (compiling and running the queries on the shop's engine),
:mod:`features.snapshot_io` (:class:`Snapshot`, writing and reading snapshot folders);
this module holds the public entry points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc

from features import contract as c
from features import feature_groups as fg
from features.definitions import lifecycle_stage
from features.manifest import FeatureSpec, build_manifest
from features.shop import open_shop
from features.snapshot_io import (
    MANIFEST_FILE,
    TABLE_FILES,
    Snapshot,
    read_snapshot,
    snapshot_dirname,
    write_snapshot,
)
from features.snapshot_passes import _VALUE_CENTS as _VALUE_CENTS
from features.snapshot_passes import (
    PACK_BITS,
    REPURCHASABLE_FLAG,
    event_type_codes,
    events_between,
    order_key,
    repurchasable_items,
)
from features.snapshot_run import _engine_settings, _run
from features.snapshot_tables import (
    _apply_schema,
    _expansion_maps,
    _finish_customer,
    _finish_cycle,
    _sorted,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- helpers


def normalize_as_of(as_of: datetime | date | str) -> datetime:
    """Return ``as_of`` as a naive UTC datetime.

    A ``date`` or ``YYYY-MM-DD`` string means midnight UTC at the start of that day; an
    aware datetime is converted to UTC.
    """
    if isinstance(as_of, str):
        try:
            as_of = datetime.fromisoformat(as_of)
        except ValueError as exc:
            raise ValueError(f"as_of must be an ISO date or datetime, got {as_of!r}") from exc
    if isinstance(as_of, datetime):
        if as_of.tzinfo is not None:
            as_of = as_of.astimezone(UTC).replace(tzinfo=None)
        return as_of
    if isinstance(as_of, date):
        return datetime(as_of.year, as_of.month, as_of.day)
    raise ValueError(f"as_of must be a datetime, date or ISO string, got {type(as_of).__name__}")


def _expansions(shop: Any, as_of: datetime) -> dict[str, dict[str, str]]:
    """Values behind the ``{key}`` columns: categories (items), channels (events before T)."""
    cats = _run(shop, "categories", as_of).column(0).to_pylist()
    channels: list[str] = []
    if c.CHANNEL in shop.events.columns:
        channels = _run(shop, "channels", as_of).column(0).to_pylist()
    return _expansion_maps(fg.sanitized_names(cats), fg.sanitized_names(channels))


def _customer_table(
    shop: Any, as_of: datetime, exp: Mapping[str, Mapping[str, str]]
) -> pd.DataFrame:
    raw = _run(shop, fg.CUSTOMER, as_of, exp)
    most = pc.max(raw.column("events_total")).as_py() or 0
    if most >= 1 << PACK_BITS:  # a packed count could have overflowed: plain counts
        log.info("a customer has %d events before T: rerunning with unpacked counts", most)
        raw = _run(shop, "customer_unpacked", as_of, exp)
    return _apply_schema(_finish_customer(raw), build_manifest(fg.CUSTOMER, exp))


def _cycle_table(
    shop: Any, as_of: datetime, exp: Mapping[str, Mapping[str, str]], entity: str
) -> pd.DataFrame:
    key = fg.ENTITY_KEYS[entity][-1]
    raw = _sorted(_run(shop, entity, as_of, exp), [c.CUSTOMER_ID, key])
    return _apply_schema(_finish_cycle(raw, key, as_of), build_manifest(entity, exp))


def customer_features(shop: Any, as_of: datetime | date | str) -> pd.DataFrame:
    """Compute only the customer-level table of the snapshot at ``as_of``.

    Identical to ``build_snapshot(shop, as_of).customer`` without the customer x
    category and customer x item tables (for scoring and benchmarks that need only it).

    Parameters
    ----------
    shop : features.shop.Shop
        An opened, validated shop.
    as_of : datetime, date or ISO string
        Snapshot time T (naive UTC; a date means midnight).

    Returns
    -------
    pandas.DataFrame
        One row per customer created before T, sorted by ``customer_id``, columns and
        dtypes as in the customer manifest.
    """
    as_of = normalize_as_of(as_of)
    with _engine_settings(shop):
        return _customer_table(shop, as_of, _expansions(shop, as_of))


def _empty_table(specs: list[FeatureSpec]) -> pd.DataFrame:
    """A table with no rows and the manifest's columns and dtypes (a table not built)."""
    return _apply_schema(
        pd.DataFrame({s.name: pd.Series([], dtype="float64") for s in specs}), specs
    )


def build_snapshot(
    shop: Any, as_of: datetime | date | str, *, tables: Collection[str] = fg.ENTITIES
) -> Snapshot:
    """Compute the point-in-time feature snapshot of ``shop`` at ``as_of``.

    Parameters
    ----------
    shop : features.shop.Shop
        An opened, validated shop (:func:`features.shop.open_shop`).
    as_of : datetime, date or ISO string
        Snapshot time T, naive UTC (a date means midnight). Only events with
        ``ts < T`` and customers with ``created_at < T`` are read.
    tables : collection of str, default all three entities
        Which tables to compute (``customer``, ``customer_category``,
        ``customer_item``). A table left out comes back with no rows but with its
        manifest columns and dtypes, and stays in the manifest; callers that read only
        some tables (the binary scorers' training job) skip the cost of the others.

    Returns
    -------
    Snapshot
        Customer, customer x category and customer x item tables plus the manifest.
        Times are days (float64), money EUR, NaN where undefined (see the manifest).
    """
    unknown = sorted(set(tables) - set(fg.ENTITIES))
    if unknown:
        raise ValueError(f"tables must be among {fg.ENTITIES}, got {unknown}")
    t0 = time.perf_counter()
    as_of = normalize_as_of(as_of)
    with _engine_settings(shop):
        exp = _expansions(shop, as_of)
        if fg.CUSTOMER in tables:
            customer = _customer_table(shop, as_of, exp)
        else:
            customer = _empty_table(build_manifest(fg.CUSTOMER, exp))
        t1 = time.perf_counter()
        cycles = {
            entity: _cycle_table(shop, as_of, exp, entity)
            if entity in tables
            else _empty_table(build_manifest(entity, exp))
            for entity in (fg.CUSTOMER_CATEGORY, fg.CUSTOMER_ITEM)
        }
        per_category, per_item = cycles[fg.CUSTOMER_CATEGORY], cycles[fg.CUSTOMER_ITEM]
    t2 = time.perf_counter()
    log.info(
        "snapshot at %s: %d customers (%.2fs), %d customer-category and %d customer-item rows "
        "(%.2fs)",
        as_of.isoformat(),
        len(customer),
        t1 - t0,
        len(per_category),
        len(per_item),
        t2 - t1,
    )
    return Snapshot(
        as_of=as_of,
        customer=customer,
        customer_category=per_category,
        customer_item=per_item,
        manifest=[s for e in fg.ENTITIES for s in build_manifest(e, exp)],
    )


def compute_features(
    data: str | Path,
    as_of: datetime | date | str,
    out: str | Path | None = None,
    *,
    lenient: bool = False,
    threads: int | None = None,
    backend: str = "duckdb",
) -> Snapshot:
    """Open the shop in ``data``, build the snapshot at ``as_of`` and optionally write it.

    Parameters
    ----------
    data : str or Path
        Shop folder (Parquet/CSV) or DuckDB file, see :func:`features.shop.open_shop`.
    as_of : datetime, date or ISO string
        Snapshot time T (naive UTC; a date means midnight).
    out : str or Path, optional
        When given, the snapshot is written atomically to ``out/as_of=YYYY-MM-DD/``
        (``customer.parquet``, ``customer_category.parquet``, ``customer_item.parquet``,
        ``manifest.json``).
    lenient : bool, default False
        Skip and count rows that break the data contract instead of failing.
    threads : int, optional
        DuckDB threads; default all cores.
    backend : str, default "duckdb"
        Feature backend (``settings.feature_backend``): ``"duckdb"`` or ``"pyspark"``
        (:mod:`features.backend`).

    Returns
    -------
    Snapshot
    """
    shop = open_shop(data, lenient=lenient, threads=threads, backend=backend)
    snapshot = build_snapshot(shop, as_of)
    if out is not None:
        path = write_snapshot(snapshot, out)
        log.info("wrote snapshot to %s", path)
    return snapshot


__all__ = [
    "MANIFEST_FILE",
    "REPURCHASABLE_FLAG",
    "TABLE_FILES",
    "Snapshot",
    "build_snapshot",
    "compute_features",
    "customer_features",
    "event_type_codes",
    "events_between",
    "lifecycle_stage",
    "normalize_as_of",
    "order_key",
    "read_snapshot",
    "repurchasable_items",
    "snapshot_dirname",
    "write_snapshot",
]
