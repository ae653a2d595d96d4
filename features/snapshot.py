"""Point-in-time feature snapshots computed as Ibis expressions.

:func:`build_snapshot` turns a :class:`~features.shop.Shop` and a time T into three
tables (customer, customer x category, customer x item) whose columns are declared in
:mod:`features.feature_groups`. Point in time: only events with ``ts < T`` and customers
with ``created_at < T`` are read; per-item median cycles come from the same history.

Work split: the customer table is one Ibis expression — an event pass over integer
codes (event type, channel, category compared once per row; mutually exclusive counts
packed into shared integer sums, see :class:`_Counters`), a session pass and an order
pass, joined to the customers, with all per-customer arithmetic (days between
timestamps, ratios, lifecycle rule) computed in the engine; pandas receives finished
columns. Money is summed in whole cents and interval moments in whole seconds, so
results do not depend on the order in which threads combine partial sums: the same
data give the same bytes. :func:`customer_features` builds the customer table alone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import contract as c
from features import feature_groups as fg
from features.definitions import (
    lifecycle_code_expr,
    mean_interval_expr,
    median_cycle_days,
    own_cycle_days,
)
from features.manifest import FeatureSpec, build_manifest, read_manifest, write_manifest
from features.shop import open_shop

log = logging.getLogger(__name__)

# Internal (non-contract) column names of intermediate relations.
_VALUE_CENTS = "value_cents"
_ORDER_KEY = "order_key"
_START = "session_start"
_HAS_CART = "has_cart"
_LAST_SESSION = "last_session_start"
DECAY_UNITS = 1e9
"""Fading session counts are summed in integer units of 1 / DECAY_UNITS session."""
_HAS_PURCHASE = "has_purchase"
_GAP_S = "gap_seconds"
_FIRST = "first_ts"
_LAST = "last_ts"
_N = "n_orders"
_CENTS = "cents_total"
_GAP_N = "gap_n"
_GAP_S1 = "gap_s1"
_GAP_S2 = "gap_s2"
_TYPE_CODE = "type_code"
_CHANNEL_CODE = "channel_code"
_CATEGORY_CODE = "category_code"
_ITEM_KEY = "item_key"
REPURCHASABLE_FLAG = "is_repurchasable"

TABLE_FILES = {
    fg.CUSTOMER: "customer.parquet",
    fg.CUSTOMER_CATEGORY: "customer_category.parquet",
    fg.CUSTOMER_ITEM: "customer_item.parquet",
}
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Snapshot:
    """Point-in-time features of every customer at ``as_of``.

    Attributes
    ----------
    as_of : datetime
        Snapshot time T (naive UTC). Nothing at or after T was read.
    customer : pandas.DataFrame
        One row per customer created before T, sorted by ``customer_id``; columns in
        manifest order.
    customer_category : pandas.DataFrame
        One row per (customer, category) with at least one order of a repurchasable
        item of that category before T, sorted by the keys.
    customer_item : pandas.DataFrame
        One row per (customer, repurchasable item) bought before T, sorted by the keys.
    manifest : list[FeatureSpec]
        One entry per column of the three tables (``entity`` says which).
    """

    as_of: datetime
    customer: pd.DataFrame = field(repr=False)
    customer_category: pd.DataFrame = field(repr=False)
    customer_item: pd.DataFrame = field(repr=False)
    manifest: list[FeatureSpec] = field(repr=False)

    def table(self, entity: str) -> pd.DataFrame:
        """Return the table of ``entity``: customer, customer_category or customer_item."""
        if entity not in fg.ENTITIES:
            raise ValueError(f"entity must be one of {fg.ENTITIES}, got {entity!r}")
        return getattr(self, entity)


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


def _ts(value: datetime) -> ibis.Value:
    return ibis.literal(value, type="timestamp")


def _opt(table: ibis.Table, name: str, dtype: str) -> ibis.Value:
    """Column ``name`` of ``table`` or a typed NULL when the optional column is absent."""
    return table[name] if name in table.columns else ibis.null(dtype)


def events_between(shop: Any, start: datetime | None, end: datetime) -> ibis.Table:
    """Columnar projection of the events with ``start <= ts < end``.

    ``start=None`` means all history before ``end``. Optional contract columns that the
    source lacks come back as typed NULLs. ``value`` is converted to whole cents
    (``value_cents``, NULL -> 0). See :func:`order_key` for how lines form orders.
    """
    e = shop.events
    cond = e[c.TS] < _ts(end)
    if start is not None:
        cond = cond & (e[c.TS] >= _ts(start))
    value = _opt(e, c.VALUE, "float64").fill_null(0.0)
    ts = e[c.TS]
    return e.filter(cond).select(
        **{
            c.CUSTOMER_ID: e[c.CUSTOMER_ID],
            c.TS: ts,
            c.EVENT_TYPE: e[c.EVENT_TYPE],
            c.ITEM_ID: _opt(e, c.ITEM_ID, "string"),
            c.CHANNEL: _opt(e, c.CHANNEL, "string"),
            c.SESSION_ID: _opt(e, c.SESSION_ID, "string"),
            c.ORDER_ID: _opt(e, c.ORDER_ID, "string"),
            _VALUE_CENTS: (value * 100).round().cast("int64"),
        }
    )


def order_key(ev: ibis.Table) -> ibis.Value:
    """The order a purchase line belongs to: ``order_id``, or, when that is missing, the
    line's timestamp (lines of one customer at the same instant form one order)."""
    return ibis.coalesce(ev[c.ORDER_ID], ev[c.TS].cast("string"))


def repurchasable_items(shop: Any) -> ibis.Table:
    """Items with their category and whether they count as repurchasable.

    ``repurchasable`` when the items table has that column (NULL -> False); otherwise
    "not durable" when it has ``durable``; otherwise every item.
    """
    it = shop.items
    if c.REPURCHASABLE in it.columns:
        flag = it[c.REPURCHASABLE].fill_null(False)
    elif c.DURABLE in it.columns:
        flag = ~it[c.DURABLE].fill_null(False)
    else:
        flag = ibis.literal(True)
    return it.select(
        **{c.ITEM_ID: it[c.ITEM_ID], c.CATEGORY: it[c.CATEGORY], REPURCHASABLE_FLAG: flag}
    )


def _customers_before(shop: Any, as_of: datetime) -> ibis.Table:
    cu = shop.customers
    t = _ts(as_of)
    cols: dict[str, ibis.Value] = {c.CUSTOMER_ID: cu[c.CUSTOMER_ID], c.CREATED_AT: cu[c.CREATED_AT]}
    if c.BIRTH_DATE in cu.columns:
        b = cu[c.BIRTH_DATE]
        before_birthday = (b.month() > as_of.month) | (
            (b.month() == as_of.month) & (b.day() > as_of.day)
        )
        age = as_of.year - b.year() - before_birthday.cast("int64")
        valid = b.notnull() & (b.cast("timestamp") < t)
        cols["age_years"] = ibis.ifelse(valid, age.cast("float64"), ibis.null("float64"))
    else:
        cols["age_years"] = ibis.null("float64")
    return cu.filter(cu[c.CREATED_AT] < t).select(**cols)


def _windows_start(as_of: datetime, windows: tuple[int, ...]) -> dict[int, ibis.Value]:
    return {w: _ts(as_of - pd.Timedelta(days=w).to_pytimedelta()) for w in windows}


def _days_before(as_of: datetime, ts: pd.Series) -> np.ndarray:
    """Float days from each timestamp to ``as_of`` (NaN where the timestamp is missing)."""
    values = pd.to_datetime(ts).to_numpy(dtype="datetime64[us]")
    delta = (np.datetime64(as_of, "us") - values).astype("timedelta64[us]")
    out = delta.astype("int64").astype("float64") / (fg.SECONDS_PER_DAY * 1e6)
    out[np.isnat(delta)] = np.nan
    return out


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where either is NaN or den == 0."""
    num = np.asarray(num, dtype="float64")
    den = np.asarray(den, dtype="float64")
    out = np.full(num.shape, np.nan)
    ok = np.isfinite(num) & np.isfinite(den) & (den != 0)
    np.divide(num, den, out=out, where=ok)
    return out


# --------------------------------------------------------------------------- aggregates


def event_type_codes() -> dict[str, int]:
    """Small integer code of every event type the customer features look at.

    Core event types first (in contract order), then any further type that a declared
    window aggregate names; every other type gets ``len(codes)``.
    """
    declared = [t for agg in fg.group("activity").aggregates for t in agg.event_types]
    return {t: i for i, t in enumerate(dict.fromkeys([*c.CORE_EVENT_TYPES, *declared]))}


def _compact_events(
    tables: Any,
    as_of: datetime,
    categories: Mapping[str, str],
    channels: Mapping[str, str],
) -> ibis.Table:
    """Integer-coded projection of the events before T for the event pass.

    Columns: ``customer_id``, ``ts``, ``type_code`` (see :func:`event_type_codes`),
    ``channel_code`` (index into ``channels``; NULL without a
    channel), ``category_code`` (index into ``categories``; -1 for a known item without
    a category; NULL when the event names no known item) and ``value_cents``. Every
    string comparison happens here, once per row; the many conditional aggregates that
    follow compare small integers only.
    """
    e = tables.events
    e = e.filter(e[c.TS] < _ts(as_of))
    if c.ITEM_ID in e.columns:
        it = tables.items
        it = it.select(
            **{
                _ITEM_KEY: it[c.ITEM_ID],
                _CATEGORY_CODE: ibis.cases(
                    *((it[c.CATEGORY] == value, i) for i, value in enumerate(categories)),
                    else_=-1,
                ).cast("int8"),
            }
        )
        e = e.left_join(it, e[c.ITEM_ID] == it[_ITEM_KEY])
        category = e[_CATEGORY_CODE]
    else:
        category = ibis.null("int8")
    codes = event_type_codes()
    et, ts = e[c.EVENT_TYPE], e[c.TS]
    if channels and c.CHANNEL in e.columns:
        ch = e[c.CHANNEL]
        channel = ibis.cases(
            *((ch == value, i) for i, value in enumerate(channels)), else_=ibis.null("int8")
        ).cast("int8")
    else:
        channel = ibis.null("int8")
    value = _opt(e, c.VALUE, "float64").fill_null(0.0)
    return e.select(
        **{
            c.CUSTOMER_ID: e[c.CUSTOMER_ID],
            c.TS: ts,
            _TYPE_CODE: ibis.cases(
                *((et == t, i) for t, i in codes.items()), else_=len(codes)
            ).cast("int8"),
            _CHANNEL_CODE: channel,
            _CATEGORY_CODE: category,
            _VALUE_CENTS: (value * 100).round().cast("int64"),
        }
    )


PACK_BITS = 21
"""Bits per counter when several counts share one 64-bit sum (see :class:`_Counters`)."""
PACK_PER_SUM = 3


@dataclass(frozen=True)
class _Counters:
    """Counts over the coded events, packed several to one integer sum.

    Each *field* is a count of rows matching a predicate; fields in one *pack* match
    mutually exclusive rows, so a row adds ``2 ** (PACK_BITS * slot)`` for the one field
    it matches (0 for none) and one ``sum`` yields up to :data:`PACK_PER_SUM` counts,
    each read back with a shift and a mask. That cuts the conditional aggregates of the
    event pass from ~70 to ~30, and the engine's cost grows faster than linearly with
    their number (wider hash-table rows). Exact while every count stays below
    ``2 ** PACK_BITS`` — guaranteed when no customer has that many events before T;
    otherwise the builder reruns with ``per_sum=1`` (plain counts).

    Attributes
    ----------
    packs : tuple of (pack name, window days or None, ((field name, predicate), ...))
    """

    packs: tuple[tuple[str, int | None, tuple[tuple[str, ibis.Value], ...]], ...]

    @classmethod
    def build(
        cls,
        groups: list[tuple[int | None, list[tuple[str, ibis.Value, frozenset[Any]]]]],
        per_sum: int,
    ) -> _Counters:
        """Pack ``(window, [(field, predicate, exclusivity keys), ...])`` groups: fields
        share a pack only when their key sets are disjoint (so they match disjoint rows)."""
        packs: list[tuple[str, int | None, tuple[tuple[str, ibis.Value], ...]]] = []
        for window, fields in groups:
            bins: list[list[tuple[str, ibis.Value, frozenset[Any]]]] = []
            for field_ in fields:
                for b in bins:
                    if len(b) < per_sum and all(not (f[2] & field_[2]) for f in b):
                        b.append(field_)
                        break
                else:
                    bins.append([field_])
            for b in bins:
                name = f"packed_{len(packs)}"
                packs.append((name, window, tuple((f[0], f[1]) for f in b)))
        return cls(tuple(packs))

    def aggregates(self, e: ibis.Table, starts: Mapping[int, ibis.Value]) -> dict[str, ibis.Value]:
        """One ``sum`` per pack (with the pack's window as its filter)."""
        out: dict[str, ibis.Value] = {}
        for name, window, fields in self.packs:
            unit = ibis.cases(
                *((pred, 1 << (PACK_BITS * slot)) for slot, (_, pred) in enumerate(fields)),
                else_=0,
            ).cast("int64")
            where = None if window is None else e[c.TS] >= starts[window]
            out[name] = unit.sum(where=where)
        return out

    def unpack(self, r: ibis.Table) -> dict[str, ibis.Value]:
        """Field name -> int64 count (0 where the customer had no events)."""
        out: dict[str, ibis.Value] = {}
        mask = ibis.literal((1 << PACK_BITS) - 1, type="uint64")
        for name, _, fields in self.packs:
            # the engine may sum int64 into a wider type (DuckDB: HUGEINT); via uint64 the
            # cast back to int64 is explicit (ibis drops an int64 -> int64 cast)
            total = r[name].fill_null(0).cast("uint64")
            for slot, (field_name, _) in enumerate(fields):
                value = total if len(fields) == 1 else (total >> (PACK_BITS * slot)) & mask
                out[field_name] = value.cast("int64")
        return out


def _counters(
    e: ibis.Table,
    categories: Mapping[str, str],
    channels: Mapping[str, str],
    per_sum: int,
) -> _Counters:
    """The packed counts of the event pass: activity counts per window, product views
    and purchase lines per category (slot ``_none`` for items without a category) and
    events per channel."""
    codes = event_type_codes()
    tc, cat, ch = e[_TYPE_CODE], e[_CATEGORY_CODE], e[_CHANNEL_CODE]
    groups: list[tuple[int | None, list[tuple[str, ibis.Value, frozenset[Any]]]]] = []
    activity = fg.group("activity")
    counted = [agg for agg in activity.aggregates if agg.how == "count"]
    for w in activity.lookbacks_days:
        fields = []
        for agg in counted:
            agg_codes = [codes[t] for t in agg.event_types]
            pred = tc.isin(agg_codes) if len(agg_codes) > 1 else tc == agg_codes[0]
            fields.append((f"{agg.name}_{w}d", pred, frozenset(agg_codes)))
        groups.append((w, fields))
    cat_fields = []
    cat_slots = [(-1, "_none"), *((i, frag) for i, frag in enumerate(categories.values()))]
    for etype, prefix in ((c.PRODUCT_VIEW, "views_n"), (c.PURCHASE, "lines_n")):
        for i, frag in cat_slots:
            pred = (tc == codes[etype]) & (cat == i)
            cat_fields.append((f"{prefix}_{frag}", pred, frozenset([(etype, i)])))
    groups.append((None, cat_fields))
    channel_fields = [
        (f"channel_n_{frag}", ch == i, frozenset([i])) for i, frag in enumerate(channels.values())
    ]
    groups.append((None, channel_fields))
    return _Counters.build(groups, per_sum)


def _event_aggregates(
    tables: Any,
    as_of: datetime,
    categories: Mapping[str, str],
    channels: Mapping[str, str],
    per_sum: int,
) -> tuple[ibis.Table, _Counters]:
    """One pass over the coded events: packed counts (:func:`_counters`), value sums of
    the ``activity`` group and the last event per core type, grouped by customer."""
    e = _compact_events(tables, as_of, categories, channels)
    codes = event_type_codes()
    starts = _windows_start(as_of, fg.WINDOWS_DAYS)
    activity = fg.group("activity")
    tc, ts = e[_TYPE_CODE], e[c.TS]
    counters = _counters(e, categories, channels, per_sum)
    metrics: dict[str, ibis.Value] = {"events_total": e.count(), **counters.aggregates(e, starts)}
    for agg in activity.aggregates:
        if agg.how != "value":
            continue
        agg_codes = [codes[t] for t in agg.event_types]
        is_type = tc.isin(agg_codes) if len(agg_codes) > 1 else tc == agg_codes[0]
        for w in activity.lookbacks_days:
            metrics[f"{agg.name}_{w}d"] = e[_VALUE_CENTS].sum(where=is_type & (ts >= starts[w]))
    for etype in c.CORE_EVENT_TYPES:
        metrics[f"last_{etype}"] = ts.max(where=tc == codes[etype])
    return e.aggregate(by=[c.CUSTOMER_ID], **metrics), counters


def _session_aggregates(ev: ibis.Table, as_of: datetime) -> ibis.Table:
    """Sessions and abandoned carts per window (session grain, then customer grain)."""
    starts = _windows_start(as_of, fg.WINDOWS_DAYS)
    e = ev.filter(ev[c.SESSION_ID].notnull())
    et = e[c.EVENT_TYPE]
    s = e.aggregate(
        by=[c.CUSTOMER_ID, c.SESSION_ID],
        **{
            _START: e[c.TS].min(),
            _HAS_CART: (et == c.ADD_TO_CART).any(),
            _HAS_PURCHASE: (et == c.PURCHASE).any(),
        },
    )
    abandoned = s[_HAS_CART] & ~s[_HAS_PURCHASE]
    metrics: dict[str, ibis.Value] = {}
    for w in fg.WINDOWS_DAYS:
        metrics[f"sessions_{w}d"] = s.count(where=s[_START] >= starts[w])
    for w in fg.WINDOWS_DAYS:
        metrics[f"abandoned_carts_{w}d"] = s.count(where=abandoned & (s[_START] >= starts[w]))
    age = _days(as_of, s[_START])
    for d in fg.DECAY_DAYS:
        # summed as integers (units of 1e-9 session): a float sum depends on the order the
        # parallel aggregation meets the rows, and snapshots must be bit-for-bit repeatable
        weight = ((-age / float(d)).exp() * DECAY_UNITS).round().cast("int64")
        metrics[f"sessions_decay_{d}d"] = weight.sum()
    metrics[_LAST_SESSION] = s[_START].max()
    return s.aggregate(by=[c.CUSTOMER_ID], **metrics)


def _send_aggregates(sends: ibis.Table, as_of: datetime) -> ibis.Table:
    """Emails sent per lookback window (customer grain)."""
    starts = _windows_start(as_of, fg.WINDOWS_DAYS)
    s = sends.filter(sends[c.TS] < _ts(as_of))
    metrics = {f"email_sends_{w}d": s.count(where=s[c.TS] >= starts[w]) for w in fg.WINDOWS_DAYS}
    return s.aggregate(by=[c.CUSTOMER_ID], **metrics)


def _orders(ev: ibis.Table) -> ibis.Table:
    """Order grain: one row per (customer, order_key) with its first line time and cents."""
    p = ev.filter(ev[c.EVENT_TYPE] == c.PURCHASE)
    p = p.mutate(**{_ORDER_KEY: order_key(p)})
    return p.aggregate(
        by=[c.CUSTOMER_ID, _ORDER_KEY],
        **{c.TS: p[c.TS].min(), _CENTS: p[_VALUE_CENTS].sum()},
    )


def _order_aggregates(ev: ibis.Table, as_of: datetime) -> ibis.Table:
    """Frequency/monetary per window, first/last order and interval moments per customer."""
    starts = _windows_start(as_of, fg.WINDOWS_DAYS)
    o = _orders(ev)
    lag = o[c.TS].lag().over(group_by=o[c.CUSTOMER_ID], order_by=[o[c.TS], o[_ORDER_KEY]])
    o = o.mutate(**{_GAP_S: o[c.TS].delta(lag, unit="second")})
    gap = o[_GAP_S]
    metrics: dict[str, ibis.Value] = {
        _N: o.count(),
        _CENTS: o[_CENTS].sum(),
        _FIRST: o[c.TS].min(),
        _LAST: o[c.TS].max(),
        _GAP_N: gap.count(),
        _GAP_S1: gap.sum(),
        _GAP_S2: (gap * gap).sum(),
    }
    for w in fg.WINDOWS_DAYS:
        metrics[f"orders_{w}d"] = o.count(where=o[c.TS] >= starts[w])
    for w in fg.WINDOWS_DAYS:
        metrics[f"cents_{w}d"] = o[_CENTS].sum(where=o[c.TS] >= starts[w])
    return o.aggregate(by=[c.CUSTOMER_ID], **metrics)


def _left_join_all(base: ibis.Table, parts: list[ibis.Table]) -> ibis.Table:
    out = base
    for part in parts:
        out = out.left_join(part, c.CUSTOMER_ID)
        # ibis keeps the right key as <key>_right on left joins; drop it
        extra = [col for col in out.columns if col.startswith(c.CUSTOMER_ID + "_")]
        if extra:
            out = out.drop(*extra)
    return out


# --------------------------------------------------------------------------- customer table


def _days(as_of: datetime, ts: ibis.Value) -> ibis.Value:
    """Float days from ``ts`` to T (microsecond resolution; NULL where ``ts`` is NULL)."""
    micros = _ts(as_of).delta(ts, unit="microsecond").cast("float64")
    return micros / (fg.SECONDS_PER_DAY * 1e6)


def _ratio(num: ibis.Value, den: ibis.Value) -> ibis.Value:
    """num / den as float64; NULL (NaN in pandas) where either is NULL or den == 0."""
    den = den.cast("float64")
    return ibis.ifelse(den != 0, num.cast("float64") / den, ibis.null("float64"))


def _n(value: ibis.Value) -> ibis.Value:
    """A count from a left-joined aggregate: NULL (no rows) -> 0, int64."""
    return value.fill_null(0).cast("int64")


def _eur(cents: ibis.Value) -> ibis.Value:
    """Whole cents (NULL -> 0) as float EUR."""
    return cents.fill_null(0).cast("float64") / 100.0


def _customer_expr(
    tables: Any,
    as_of: datetime,
    categories: Mapping[str, str],
    channels: Mapping[str, str],
    per_sum: int = PACK_PER_SUM,
) -> ibis.Table:
    """The customer table: customers created before T left-joined to their event,
    session and order aggregates, with every feature column computed in the engine, in
    manifest order (``lifecycle_stage`` as its int8 code). Unsorted: sorting the wide
    rows is left to Arrow."""
    ev = events_between(tables, None, as_of)
    events, counters = _event_aggregates(tables, as_of, categories, channels, per_sum)
    parts = [events, _session_aggregates(ev, as_of), _order_aggregates(ev, as_of)]
    if tables.sends is not None:
        parts.append(_send_aggregates(tables.sends, as_of))
    r = _left_join_all(_customers_before(tables, as_of), parts)
    counts = counters.unpack(r)
    n_orders = _n(r[_N])
    recency = _days(as_of, r[_LAST])
    first_days = _days(as_of, r[_FIRST])
    mean_interval = mean_interval_expr(first_days, recency, n_orders)
    gap_n = _n(r[_GAP_N]).cast("float64")
    s1 = r[_GAP_S1].fill_null(0).cast("float64")
    s2 = r[_GAP_S2].fill_null(0).cast("float64")
    var = ibis.greatest((s2 - s1 * s1 / gap_n) / (gap_n - 1.0), 0.0)
    std = ibis.ifelse(gap_n >= 2, var.sqrt() / fg.SECONDS_PER_DAY, None)

    out: dict[str, ibis.Value] = {
        c.CUSTOMER_ID: r[c.CUSTOMER_ID],
        "tenure_days": _days(as_of, r[c.CREATED_AT]),
        "age_years": r["age_years"].cast("float64"),
        "recency_days": recency,
        "orders_total": n_orders,
        "monetary_total": _eur(r[_CENTS]),
        "first_order_days": first_days,
        "interval_mean_days": mean_interval,
        "interval_std_days": std,
        "recency_over_interval": _ratio(recency, mean_interval),
        "events_total": _n(r["events_total"]),
    }
    for w in fg.WINDOWS_DAYS:
        out[f"orders_{w}d"] = _n(r[f"orders_{w}d"])
        out[f"monetary_{w}d"] = _eur(r[f"cents_{w}d"])
        out[f"sessions_{w}d"] = _n(r[f"sessions_{w}d"])
        out[f"abandoned_carts_{w}d"] = _n(r[f"abandoned_carts_{w}d"])
    for d in fg.DECAY_DAYS:
        units = r[f"sessions_decay_{d}d"].fill_null(0).cast("float64")
        out[f"sessions_decay_{d}d"] = units / DECAY_UNITS
    out["days_since_last_session"] = _days(as_of, r[_LAST_SESSION])
    for agg in fg.group("activity").aggregates:
        for w in fg.WINDOWS_DAYS:
            name = f"{agg.name}_{w}d"
            out[name] = counts[name] if agg.how == "count" else _eur(r[name])
    for w in fg.WINDOWS_DAYS:
        sent = _n(r[f"email_sends_{w}d"]) if tables.sends is not None else ibis.literal(0)
        out[f"email_sends_{w}d"] = sent.cast("int64")
        out[f"email_open_rate_{w}d"] = _ratio(out[f"email_opens_{w}d"], sent)
    for etype in c.CORE_EVENT_TYPES:
        out[f"days_since_last_{etype}"] = _days(as_of, r[f"last_{etype}"])
    frags = ["_none", *categories.values()]
    views_n = functools.reduce(operator.add, [counts[f"views_n_{f}"] for f in frags])
    lines_n = functools.reduce(operator.add, [counts[f"lines_n_{f}"] for f in frags])
    for frag in categories.values():
        out[f"view_share_{frag}"] = _ratio(counts[f"views_n_{frag}"], views_n)
        out[f"purchase_share_{frag}"] = _ratio(counts[f"lines_n_{frag}"], lines_n)
    if channels:
        channel_n = functools.reduce(
            operator.add, [counts[f"channel_n_{f}"] for f in channels.values()]
        )
    for frag in channels.values():
        out[f"channel_share_{frag}"] = _ratio(counts[f"channel_n_{frag}"], channel_n)
    stage = lifecycle_code_expr(n_orders, recency, first_days, mean_interval)
    out["lifecycle_stage"] = stage
    for i, name in enumerate(fg.LIFECYCLE_STAGES):
        out[f"lifecycle_{name}"] = (stage == i).cast("int8")
    names = [s.name for s in build_manifest(fg.CUSTOMER, _expansion_maps(categories, channels))]
    return r.select(**{name: out[name] for name in names})


def _finish_customer(table: pa.Table) -> pd.DataFrame:
    """The engine's customer rows as pandas, sorted by id; lifecycle code -> categorical."""
    df = _sorted(table, [c.CUSTOMER_ID])
    df["lifecycle_stage"] = pd.Categorical.from_codes(
        df["lifecycle_stage"].to_numpy(dtype=np.int8),
        categories=pd.Index(list(fg.LIFECYCLE_STAGES)),
    )
    return df


# --------------------------------------------------------------------------- cycle tables


def _cycle_expr(tables: Any, as_of: datetime, key: str) -> ibis.Table:
    """Purchases of repurchasable items before T per (customer, ``key``): number of
    distinct orders, first and last purchase time (unsorted)."""
    ev = events_between(tables, None, as_of)
    p = ev.filter((ev[c.EVENT_TYPE] == c.PURCHASE) & ev[c.ITEM_ID].notnull())
    items = repurchasable_items(tables)
    items = items.filter(items[REPURCHASABLE_FLAG]).select(c.ITEM_ID, c.CATEGORY)
    base = _customers_before(tables, as_of).select(c.CUSTOMER_ID)
    lines = p.inner_join(items, c.ITEM_ID).semi_join(base, c.CUSTOMER_ID)
    lines = lines.mutate(**{_ORDER_KEY: order_key(lines)})
    return lines.aggregate(
        by=[c.CUSTOMER_ID, key],
        **{
            "purchases": lines[_ORDER_KEY].nunique(),
            _FIRST: lines[c.TS].min(),
            _LAST: lines[c.TS].max(),
        },
    )


def _finish_cycle(raw: pd.DataFrame, key: str, as_of: datetime) -> pd.DataFrame:
    n = raw["purchases"].to_numpy(dtype="int64")
    since = _days_before(as_of, raw[_LAST])
    own = own_cycle_days(_days_before(as_of, raw[_FIRST]), since, n)
    median_arr = median_cycle_days(own, raw[key])
    return pd.DataFrame(
        {
            c.CUSTOMER_ID: raw[c.CUSTOMER_ID].array,
            key: raw[key].array,
            "purchases": n,
            "days_since_last": since,
            "own_cycle_days": own,
            "median_cycle_days": median_arr,
            "overdue_own": _divide(since, own),
            "overdue_median": _divide(since, median_arr),
        }
    )


# --------------------------------------------------------------------------- public API


def _categories_expr(tables: Any) -> ibis.Table:
    it = tables.items
    return it.filter(it[c.CATEGORY].notnull()).select(c.CATEGORY).distinct()


def _channels_expr(tables: Any, as_of: datetime) -> ibis.Table:
    e = tables.events
    return e.filter((e[c.TS] < _ts(as_of)) & e[c.CHANNEL].notnull()).select(c.CHANNEL).distinct()


def _expansion_maps(
    categories: Mapping[str, str], channels: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """All ``{key}`` expansions given the category and channel value -> fragment maps."""
    return {
        "category": dict(categories),
        "channel": dict(channels),
        "event_type": {t: t for t in c.CORE_EVENT_TYPES},
        "lifecycle": {s: s for s in fg.LIFECYCLE_STAGES},
    }


def _expansions(shop: Any, as_of: datetime) -> dict[str, dict[str, str]]:
    """Values behind the ``{key}`` columns: categories (items), channels (events before T)."""
    cats = _run(shop, "categories", as_of).column(0).to_pylist()
    channels: list[str] = []
    if c.CHANNEL in shop.events.columns:
        channels = _run(shop, "channels", as_of).column(0).to_pylist()
    return _expansion_maps(fg.sanitized_names(cats), fg.sanitized_names(channels))


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


_ARROW_TO_PANDAS = {
    pa.string(): pd.StringDtype("pyarrow", na_value=np.nan),
    pa.large_string(): pd.StringDtype("pyarrow", na_value=np.nan),
}


def _sorted(table: pa.Table, keys: list[str]) -> pd.DataFrame:
    """``table`` as pandas, rows sorted by ``keys`` (byte order of the UTF-8 ids).

    Sorted in Arrow (indices of the key columns, then one ``take``), converted with the
    strings kept Arrow-backed (no Python objects): cheaper than an ORDER BY over the wide
    rows in the engine or a ``take`` over the pandas frame.
    """
    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys])
    if len(order) and not pc.all(pc.equal(order, pa.array(np.arange(len(order))))).as_py():
        table = table.take(order)
    return table.to_pandas(split_blocks=True, types_mapper=_ARROW_TO_PANDAS.get)


def _apply_schema(df: pd.DataFrame, specs: list[FeatureSpec]) -> pd.DataFrame:
    """Order and type the columns exactly as the manifest says."""
    names = [s.name for s in specs]
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise RuntimeError(f"snapshot builder did not produce columns {missing}")
    df = df[names]
    types: dict[str, Any] = {}
    for s in specs:
        if s.dtype == "string":
            types[s.name] = pd.StringDtype(na_value=np.nan)
        elif s.dtype != "category":
            types[s.name] = s.dtype
    return df.astype(types).reset_index(drop=True)


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


def snapshot_dirname(as_of: datetime) -> str:
    """Folder name of a snapshot: ``as_of=YYYY-MM-DD`` (with ``THH-MM-SS`` when not midnight)."""
    if as_of.time() == datetime.min.time():
        return f"as_of={as_of:%Y-%m-%d}"
    return f"as_of={as_of:%Y-%m-%dT%H-%M-%S}"


def write_snapshot(snapshot: Snapshot, out: str | Path) -> Path:
    """Write the three tables as Parquet plus ``manifest.json`` to ``out/as_of=.../``.

    The folder is written under a temporary name next to the target and renamed into
    place, so readers never see a half-written snapshot and a failed write leaves the
    previous snapshot intact.

    Returns
    -------
    Path
        The snapshot folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / snapshot_dirname(snapshot.as_of)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=out))
    try:
        for entity, filename in TABLE_FILES.items():
            table = pa.Table.from_pandas(snapshot.table(entity), preserve_index=False)
            pq.write_table(table, tmp / filename, compression="zstd")
        rows = {e: len(snapshot.table(e)) for e in fg.ENTITIES}
        write_manifest(
            tmp / MANIFEST_FILE,
            snapshot.as_of,
            snapshot.manifest,
            tables=dict(TABLE_FILES),
            rows=rows,
            lifecycle_rule=fg.LIFECYCLE_RULE,
        )
        old = None
        if target.exists():
            old = out / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_snapshot(path: str | Path) -> Snapshot:
    """Read a snapshot folder written by :func:`write_snapshot`."""
    path = Path(path)
    as_of, manifest = read_manifest(path / MANIFEST_FILE)
    tables = {e: pd.read_parquet(path / f) for e, f in TABLE_FILES.items()}
    return Snapshot(as_of=as_of, manifest=manifest, **tables)


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
        Ibis backend (``settings.feature_backend``); only ``"duckdb"`` is supported.

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
