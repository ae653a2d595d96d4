"""Point-in-time feature snapshots computed as Ibis expressions.

:func:`build_snapshot` turns a :class:`~features.shop.Shop` and a time T into three
tables (customer, customer x category, customer x item) whose columns are declared in
:mod:`features.feature_groups`. Point in time: only events with ``ts < T`` and customers
with ``created_at < T`` are read; per-item median cycles come from the same history.

Work split: every aggregate over events (the expensive part) is one Ibis expression,
compiled by the backend into conditional aggregates (``FILTER``) with one pass per
grain (events, sessions, orders, category lines); the per-customer arithmetic that
follows (days between timestamps, ratios, lifecycle rule) runs vectorised in pandas on
the aggregated rows. Money is summed in whole cents and interval moments in whole
seconds, so results do not depend on the order in which threads combine partial sums:
the same data give the same bytes.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
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
from features.manifest import FeatureSpec, build_manifest, read_manifest, write_manifest
from features.shop import open_shop

log = logging.getLogger(__name__)

# Internal (non-contract) column names of intermediate relations.
_VALUE_CENTS = "value_cents"
_ORDER_KEY = "order_key"
_START = "session_start"
_HAS_CART = "has_cart"
_HAS_PURCHASE = "has_purchase"
_GAP_S = "gap_seconds"
_FIRST = "first_ts"
_LAST = "last_ts"
_N = "n_orders"
_CENTS = "cents_total"
_GAP_N = "gap_n"
_GAP_S1 = "gap_s1"
_GAP_S2 = "gap_s2"
_CHANNEL_N = "channel_n"
_TYPE_CODE = "type_code"
_BUCKET = "window_bucket"
_VIEWS_N = "category_views_n"
_LINES_N = "category_lines_n"
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


def _event_aggregates(ev: ibis.Table, as_of: datetime, channels: Mapping[str, str]) -> ibis.Table:
    """One pass over events: window aggregates, last event per type, channel counts.

    Event type and window are first turned into small integer codes (one string
    comparison chain and one timestamp comparison chain per row), so that each of the
    many conditional aggregates tests integers only.
    """
    starts = _windows_start(as_of, fg.WINDOWS_DAYS)
    activity = fg.group("activity")
    declared = [t for agg in activity.aggregates for t in agg.event_types]
    types = list(dict.fromkeys([*c.CORE_EVENT_TYPES, *declared]))
    code = {t: i for i, t in enumerate(types)}
    et, ts = ev[c.EVENT_TYPE], ev[c.TS]
    type_code = ibis.cases(*((et == t, code[t]) for t in types), else_=len(types)).cast("int8")
    windows = sorted(fg.WINDOWS_DAYS)
    bucket = ibis.cases(
        *((ts >= starts[w], i) for i, w in enumerate(windows)), else_=len(windows)
    ).cast("int8")
    e = ev.select(
        c.CUSTOMER_ID, c.TS, _VALUE_CENTS, c.CHANNEL, **{_TYPE_CODE: type_code, _BUCKET: bucket}
    )
    tc, b = e[_TYPE_CODE], e[_BUCKET]
    metrics: dict[str, ibis.Value] = {"events_total": e.count()}
    for agg in activity.aggregates:
        codes = [code[t] for t in agg.event_types]
        is_type = tc.isin(codes) if len(codes) > 1 else tc == codes[0]
        for w in activity.lookbacks_days:
            where = is_type & (b <= windows.index(w))
            name = f"{agg.name}_{w}d"
            if agg.how == "count":
                metrics[name] = e.count(where=where)
            else:
                metrics[name] = e[_VALUE_CENTS].sum(where=where)
    for etype in c.CORE_EVENT_TYPES:
        metrics[f"last_{etype}"] = e[c.TS].max(where=tc == code[etype])
    ch = e[c.CHANNEL]
    metrics[_CHANNEL_N] = e.count(where=ch.notnull())
    for value, frag in channels.items():
        metrics[f"channel_n_{frag}"] = e.count(where=ch == value)
    return e.aggregate(by=[c.CUSTOMER_ID], **metrics)


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


def _category_aggregates(
    ev: ibis.Table, items: ibis.Table, categories: Mapping[str, str]
) -> ibis.Table:
    """Product views and purchase lines per category (events joined to the items)."""
    et = ev[c.EVENT_TYPE]
    e = ev.filter(et.isin((c.PRODUCT_VIEW, c.PURCHASE)) & ev[c.ITEM_ID].notnull())
    it = items.select(c.ITEM_ID, c.CATEGORY)
    j = e.inner_join(it, c.ITEM_ID)
    is_view, is_line = j[c.EVENT_TYPE] == c.PRODUCT_VIEW, j[c.EVENT_TYPE] == c.PURCHASE
    metrics: dict[str, ibis.Value] = {
        _VIEWS_N: j.count(where=is_view),
        _LINES_N: j.count(where=is_line),
    }
    cat = j[c.CATEGORY]
    for value, frag in categories.items():
        metrics[f"views_n_{frag}"] = j.count(where=is_view & (cat == value))
        metrics[f"lines_n_{frag}"] = j.count(where=is_line & (cat == value))
    return j.aggregate(by=[c.CUSTOMER_ID], **metrics)


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


def _customer_expr(
    tables: Any,
    as_of: datetime,
    categories: Mapping[str, str],
    channels: Mapping[str, str],
) -> ibis.Table:
    """Customers created before T left-joined to their event, session, order and
    category aggregates (unsorted: sorting wide rows is left to Arrow)."""
    ev = events_between(tables, None, as_of)
    base = _customers_before(tables, as_of)
    return _left_join_all(
        base,
        [
            _event_aggregates(ev, as_of, channels),
            _session_aggregates(ev, as_of),
            _order_aggregates(ev, as_of),
            _category_aggregates(ev, tables.items, categories),
        ],
    )


def _count(raw: pd.DataFrame, name: str) -> np.ndarray:
    return raw[name].fillna(0).to_numpy(dtype="int64")


def _finish_customer(
    raw: pd.DataFrame,
    as_of: datetime,
    categories: Mapping[str, str],
    channels: Mapping[str, str],
) -> pd.DataFrame:
    """Per-customer arithmetic on the aggregated rows; returns columns in manifest order."""
    out: dict[str, Any] = {c.CUSTOMER_ID: raw[c.CUSTOMER_ID].array}
    out["tenure_days"] = _days_before(as_of, raw[c.CREATED_AT])
    out["age_years"] = raw["age_years"].to_numpy(dtype="float64")

    n_orders = _count(raw, _N)
    recency = _days_before(as_of, raw[_LAST])
    first_days = _days_before(as_of, raw[_FIRST])
    out["recency_days"] = recency
    out["orders_total"] = n_orders
    out["monetary_total"] = _count(raw, _CENTS) / 100.0
    for w in fg.WINDOWS_DAYS:
        out[f"orders_{w}d"] = _count(raw, f"orders_{w}d")
    for w in fg.WINDOWS_DAYS:
        out[f"monetary_{w}d"] = _count(raw, f"cents_{w}d") / 100.0

    mean_interval = _divide(first_days - recency, n_orders - 1.0)
    mean_interval[n_orders < 2] = np.nan
    gap_n = _count(raw, _GAP_N).astype("float64")
    s1 = _count(raw, _GAP_S1).astype("float64")
    s2 = _count(raw, _GAP_S2).astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s1 * s1 / gap_n) / (gap_n - 1.0)
    var = np.where(gap_n >= 2, np.maximum(var, 0.0), np.nan)
    out["first_order_days"] = first_days
    out["interval_mean_days"] = mean_interval
    out["interval_std_days"] = np.sqrt(var) / fg.SECONDS_PER_DAY
    out["recency_over_interval"] = _divide(recency, mean_interval)

    for prefix in ("sessions", "abandoned_carts"):
        for w in fg.WINDOWS_DAYS:
            out[f"{prefix}_{w}d"] = _count(raw, f"{prefix}_{w}d")

    out["events_total"] = _count(raw, "events_total")
    for agg in fg.group("activity").aggregates:
        for w in fg.WINDOWS_DAYS:
            name = f"{agg.name}_{w}d"
            out[name] = _count(raw, name) if agg.how == "count" else _count(raw, name) / 100.0

    for etype in c.CORE_EVENT_TYPES:
        out[f"days_since_last_{etype}"] = _days_before(as_of, raw[f"last_{etype}"])

    views_n, lines_n = _count(raw, _VIEWS_N), _count(raw, _LINES_N)
    for frag in categories.values():
        out[f"view_share_{frag}"] = _divide(_count(raw, f"views_n_{frag}"), views_n)
    for frag in categories.values():
        out[f"purchase_share_{frag}"] = _divide(_count(raw, f"lines_n_{frag}"), lines_n)

    channel_n = _count(raw, _CHANNEL_N)
    for frag in channels.values():
        out[f"channel_share_{frag}"] = _divide(_count(raw, f"channel_n_{frag}"), channel_n)

    stage = lifecycle_stage(n_orders, recency, first_days, mean_interval)
    out["lifecycle_stage"] = pd.Categorical.from_codes(
        np.asarray(stage, dtype=np.int8), categories=pd.Index(list(fg.LIFECYCLE_STAGES))
    )
    for i, name in enumerate(fg.LIFECYCLE_STAGES):
        out[f"lifecycle_{name}"] = (stage == i).astype("int8")
    return pd.DataFrame(out)


def lifecycle_stage(
    n_orders: np.ndarray,
    recency_days: np.ndarray,
    first_order_days: np.ndarray,
    interval_mean_days: np.ndarray,
) -> np.ndarray:
    """Lifecycle stage code per customer (index into ``LIFECYCLE_STAGES``).

    Parameters
    ----------
    n_orders : array of int
        Orders before T.
    recency_days, first_order_days : array of float
        Days from the last / first order to T (NaN without orders).
    interval_mean_days : array of float
        Mean days between orders (NaN with fewer than 2 orders).

    Returns
    -------
    numpy.ndarray of int8
        Codes following :data:`features.feature_groups.LIFECYCLE_RULE`.
    """
    n = np.asarray(n_orders)
    rec = np.asarray(recency_days, dtype="float64")
    first = np.asarray(first_order_days, dtype="float64")
    mean = np.asarray(interval_mean_days, dtype="float64")
    idx = {name: np.int8(i) for i, name in enumerate(fg.LIFECYCLE_STAGES)}
    with np.errstate(invalid="ignore"):
        overdue = (n >= 2) & (rec > np.maximum(fg.OVERDUE_FACTOR * mean, fg.OVERDUE_MIN_DAYS))
        lapsed = (n >= 1) & ((rec > fg.LAPSED_DAYS) | overdue)
        developing = (n >= 2) & (first < fg.DEVELOPMENT_DAYS)
    return np.select(
        [n == 0, lapsed, n == 1, developing],
        [idx[fg.ACQUISITION], idx[fg.WIN_BACK], idx[fg.ACTIVATION], idx[fg.DEVELOPMENT]],
        default=idx[fg.RETENTION],
    ).astype("int8")


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
    span = _days_before(as_of, raw[_FIRST]) - since
    own = _divide(span, n - 1.0)
    own[n < 2] = np.nan
    median = pd.Series(own, index=raw.index).groupby(raw[key]).transform("median")
    median_arr = median.to_numpy(dtype="float64")
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


def _expansions(shop: Any, as_of: datetime) -> dict[str, dict[str, str]]:
    """Values behind the ``{key}`` columns: categories (items), channels (events before T)."""
    cats = _run(shop, "categories", as_of).column(0).to_pylist()
    channels: list[str] = []
    if c.CHANNEL in shop.events.columns:
        channels = _run(shop, "channels", as_of).column(0).to_pylist()
    return {
        "category": fg.sanitized_names(cats),
        "channel": fg.sanitized_names(channels),
        "event_type": {t: t for t in c.CORE_EVENT_TYPES},
        "lifecycle": {s: s for s in fg.LIFECYCLE_STAGES},
    }


# Compiled queries are cached per (query, T, expansion values, table names and schemas,
# dialect): building and compiling the Ibis expression costs more than running it on
# small data, and the SQL depends on nothing else.
_QUERIES = {
    "categories": lambda t, as_of, cats, chans: _categories_expr(t),
    "channels": lambda t, as_of, cats, chans: _channels_expr(t, as_of),
    "customer": lambda t, as_of, cats, chans: _customer_expr(t, as_of, dict(cats), dict(chans)),
    "customer_category": lambda t, as_of, cats, chans: _cycle_expr(t, as_of, c.CATEGORY),
    "customer_item": lambda t, as_of, cats, chans: _cycle_expr(t, as_of, c.ITEM_ID),
}


@dataclass(frozen=True)
class _Tables:
    customers: ibis.Table
    items: ibis.Table
    events: ibis.Table


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
        tuple(_signature(t) for t in (shop.customers, shop.items, shop.events)),
        shop.con.name,
    )
    if shop.con.name == "duckdb":
        # ibis 12's Backend.sql() calls DuckDB's removed fetch_arrow_table(); go direct
        return shop.con.con.sql(sql).to_arrow_table()
    return shop.con.sql(sql, dialect=shop.con.name).to_pyarrow()  # pragma: no cover


def _sorted(table: pa.Table, keys: list[str]) -> pd.DataFrame:
    """``table`` as pandas, rows sorted by ``keys`` (byte order of the UTF-8 ids).

    Only the key columns are sorted (in Arrow); the rows are then reordered in pandas.
    Both are far cheaper than an ORDER BY over the wide aggregated rows in the engine
    or an Arrow ``take`` over its many chunks.
    """
    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys]).to_numpy()
    df = table.to_pandas(split_blocks=True)
    if len(order) and not (order == np.arange(len(order))).all():
        df = df.take(order).reset_index(drop=True)
    return df


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


def build_snapshot(shop: Any, as_of: datetime | date | str) -> Snapshot:
    """Compute the point-in-time feature snapshot of ``shop`` at ``as_of``.

    Parameters
    ----------
    shop : features.shop.Shop
        An opened, validated shop (:func:`features.shop.open_shop`).
    as_of : datetime, date or ISO string
        Snapshot time T, naive UTC (a date means midnight). Only events with
        ``ts < T`` and customers with ``created_at < T`` are read.

    Returns
    -------
    Snapshot
        Customer, customer x category and customer x item tables plus the manifest.
        Times are days (float64), money EUR, NaN where undefined (see the manifest).
    """
    t0 = time.perf_counter()
    as_of = normalize_as_of(as_of)
    exp = _expansions(shop, as_of)
    specs = {e: build_manifest(e, exp) for e in fg.ENTITIES}
    raw = _sorted(_run(shop, "customer", as_of, exp), [c.CUSTOMER_ID])
    customer = _finish_customer(raw, as_of, exp["category"], exp["channel"])
    t1 = time.perf_counter()
    per_category, per_item = (
        _finish_cycle(
            _sorted(_run(shop, entity, as_of, exp), [c.CUSTOMER_ID, key]),
            key,
            as_of,
        )
        for entity, key in (
            (fg.CUSTOMER_CATEGORY, c.CATEGORY),
            (fg.CUSTOMER_ITEM, c.ITEM_ID),
        )
    )
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
        customer=_apply_schema(customer, specs[fg.CUSTOMER]),
        customer_category=_apply_schema(per_category, specs[fg.CUSTOMER_CATEGORY]),
        customer_item=_apply_schema(per_item, specs[fg.CUSTOMER_ITEM]),
        manifest=[s for e in fg.ENTITIES for s in specs[e]],
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

    Returns
    -------
    Snapshot
    """
    shop = open_shop(data, lenient=lenient, threads=threads)
    snapshot = build_snapshot(shop, as_of)
    if out is not None:
        path = write_snapshot(snapshot, out)
        log.info("wrote snapshot to %s", path)
    return snapshot
