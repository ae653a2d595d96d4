"""The event, session, order and send passes of the customer snapshot, as Ibis expressions.

Every function here builds an expression over the shop's tables (or unbound tables of
the same schema) and reads only rows before T; nothing is executed. The event pass
compares strings once per row (:func:`_compact_events`) and packs mutually exclusive
counts into shared integer sums (:class:`_Counters`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ibis
import numpy as np
import pandas as pd

from features import contract as c
from features import feature_groups as fg
from features.definitions import order_key_expr as order_key

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
            in_window = None if window is None else e[c.TS] >= starts[window]
            unit = ibis.cases(
                *(
                    (pred if in_window is None else in_window & pred, 1 << (PACK_BITS * slot))
                    for slot, (_, pred) in enumerate(fields)
                ),
                else_=0,
            ).cast("int64")
            out[name] = unit.sum()
        return out

    def unpack(self, r: ibis.Table, sum_type: str = "uint64") -> dict[str, ibis.Value]:
        """Field name -> int64 count (0 where the customer had no events).

        ``sum_type`` is the type the packed sums are read as
        (:attr:`features.backend.FeatureBackend.packed_sum_type`)."""
        out: dict[str, ibis.Value] = {}
        mask = ibis.literal((1 << PACK_BITS) - 1, type=sum_type)
        for name, _, fields in self.packs:
            # the engine may sum int64 into a wider type (DuckDB: HUGEINT); via uint64 the
            # cast back to int64 is explicit (ibis drops an int64 -> int64 cast); engines
            # without unsigned types (Spark) sum int64 to int64 and read it as such
            total = r[name].fill_null(0).cast(sum_type)
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
            metrics[f"{agg.name}_{w}d"] = ibis.ifelse(
                is_type & (ts >= starts[w]), e[_VALUE_CENTS], 0
            ).sum()
    for etype in c.CORE_EVENT_TYPES:
        metrics[f"last_{etype}"] = ibis.ifelse(tc == codes[etype], ts, ibis.null("timestamp")).max()
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


def _days(as_of: datetime, ts: ibis.Value) -> ibis.Value:
    """Float days from ``ts`` to T (microsecond resolution; NULL where ``ts`` is NULL)."""
    micros = _ts(as_of).delta(ts, unit="microsecond").cast("float64")
    return micros / (fg.SECONDS_PER_DAY * 1e6)
