"""Online session features: the snapshot's own definitions, evaluated for a few customers.

A session event posted to ``POST /v1/events`` changes the customer's session features
(:func:`session_columns`: sessions, abandoned carts, fading visit counts, product views,
add-to-carts, days since the last session event, category view shares). They are not
re-implemented here: :class:`OnlineFeatures` puts the touched customers' events -- the
shop's history before the batch snapshot time T plus the events posted online since T --
into a small in-memory DuckDB shop and runs :func:`features.snapshot.customer_features`
on it, the same Ibis expression the batch snapshot runs on the whole shop. Point in
time: the values at ``t`` read only events with ``ts < t``.

Every customer-table feature depends on the snapshot time only through differences
``T - ts`` (days, window starts, fading weights, all in whole microseconds), so the
features at ``t`` equal the features at a fixed reference instant :data:`REFERENCE` of the
same events shifted by ``REFERENCE - t``. Evaluating at the fixed instant keeps the
compiled query in the snapshot module's cache; compiling it anew for every ``t`` would
cost seconds. The mini shop carries no ``channel`` column (no session column reads it, and
a per-customer channel list would change the compiled query), and ``age_years`` (calendar
arithmetic on a birth date that is not shifted) is not a session column: neither is read
from the online result.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from features import contract as c
from features import feature_groups as fg
from features.snapshot import customer_features

#: Event types a visitor's browsing session produces (ARCHITECTURE §2).
SESSION_EVENT_TYPES: tuple[str, ...] = (
    c.PAGE_VIEW,
    c.PRODUCT_VIEW,
    c.ADD_TO_CART,
    c.REMOVE_FROM_CART,
)
#: Fixed evaluation instant of the shifted events (see the module docstring).
REFERENCE = datetime(2100, 1, 1)
#: Customers whose history before T is kept in memory per worker.
HISTORY_CACHE = 4_096

_EVENT_SCHEMA = pa.schema(
    [
        (c.CUSTOMER_ID, pa.string()),
        (c.TS, pa.timestamp("us")),
        (c.EVENT_TYPE, pa.string()),
        (c.ITEM_ID, pa.string()),
        (c.QUANTITY, pa.float64()),
        (c.VALUE, pa.float64()),
        (c.SESSION_ID, pa.string()),
        (c.CAMPAIGN_ID, pa.string()),
        (c.ORDER_ID, pa.string()),
    ]
)
_EVENT_COLS = tuple(_EVENT_SCHEMA.names)
_CUSTOMER_SCHEMA = pa.schema([(c.CUSTOMER_ID, pa.string()), (c.CREATED_AT, pa.timestamp("us"))])


def session_columns(categories: Sequence[str] = ()) -> list[str]:
    """Customer-table columns that session events change, in manifest order.

    Taken from the declared feature groups (:mod:`features.feature_groups`): every column
    of the ``sessions`` group, ``events_total`` and the ``activity`` aggregates counting
    only session event types, ``days_since_last_<type>`` of the session event types and
    the ``view_share_<category>`` columns.

    Parameters
    ----------
    categories : sequence of str
        Sanitised category fragments of the ``view_share_{key}`` columns (from the
        snapshot's manifest); none gives the category-independent columns only.

    Returns
    -------
    list of str
    """
    out: list[str] = []
    for col in fg.group("sessions").columns:
        if col.windowed:
            out += [col.name.replace("{w}", str(w)) for w in fg.group("sessions").lookbacks_days]
        else:
            out.append(col.name)
    activity = fg.group("activity")
    out.append("events_total")
    for agg in activity.aggregates:
        if set(agg.event_types) <= set(SESSION_EVENT_TYPES):
            out += [f"{agg.name}_{w}d" for w in activity.lookbacks_days]
    out += [f"days_since_last_{t}" for t in SESSION_EVENT_TYPES]
    out += [f"view_share_{frag}" for frag in categories]
    return out


def _table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    cols = {}
    for f in schema:
        if f.name in frame.columns:
            values = frame[f.name]
            if pa.types.is_timestamp(f.type):
                cols[f.name] = pa.array(values.to_numpy(dtype="datetime64[us]"), f.type)
            else:
                cols[f.name] = pa.array(values.astype(object).where(values.notna(), None), f.type)
        else:
            cols[f.name] = pa.nulls(len(frame), f.type)
    return pa.table(cols, schema=schema)


class _MiniShop:
    """The attributes :func:`features.snapshot.customer_features` reads from a shop."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.customers = con.table(c.CUSTOMERS)
        self.items = con.table(c.ITEMS)
        self.events = con.table(c.EVENTS)
        self.sends = None


class OnlineFeatures:
    """Customer features of a few customers at any instant after the batch snapshot.

    Parameters
    ----------
    shop : features.shop.Shop
        The shop the batch snapshot at ``as_of`` was built from (history of the customers).
    as_of : datetime
        Batch snapshot time T (naive UTC): history comes from the shop's events before T,
        everything later from the events posted online.

    Notes
    -----
    Thread-safe (one lock around the DuckDB work). Each worker process holds its own.
    """

    def __init__(self, shop: Any, as_of: datetime) -> None:
        self.shop = shop
        self.as_of = as_of
        self._lock = threading.Lock()
        self._history: OrderedDict[str, tuple[pa.Table, pa.Table]] = OrderedDict()
        self._con = ibis.duckdb.connect(threads=1)
        items = shop.items.select(c.ITEM_ID, c.CATEGORY).to_pandas()
        self._con.con.register(
            c.ITEMS,
            pa.table(
                {
                    c.ITEM_ID: pa.array(items[c.ITEM_ID].astype(str).tolist(), pa.string()),
                    c.CATEGORY: pa.array(
                        items[c.CATEGORY].astype(object).where(items[c.CATEGORY].notna(), None),
                        pa.string(),
                    ),
                }
            ),
        )
        self._register(_CUSTOMER_SCHEMA.empty_table(), _EVENT_SCHEMA.empty_table())
        self._mini = _MiniShop(self._con)

    def _register(self, customers: pa.Table, events: pa.Table) -> None:
        self._con.con.register(c.CUSTOMERS, customers)
        self._con.con.register(c.EVENTS, events)

    def _histories(self, ids: list[str]) -> tuple[pa.Table, pa.Table]:
        """(customer rows, events before T) of ``ids``, from the cache or the shop."""
        missing = [i for i in ids if i not in self._history]
        if missing:
            cu = self.shop.customers
            cu = cu.filter(cu[c.CUSTOMER_ID].isin(missing)).select(c.CUSTOMER_ID, c.CREATED_AT)
            customers = cu.to_pandas()
            ev = self.shop.events
            cols = [col for col in _EVENT_COLS if col in ev.columns]
            ev = ev.filter(
                ev[c.CUSTOMER_ID].isin(missing)
                & (ev[c.TS] < ibis.literal(self.as_of, type="timestamp"))
            ).select(*cols)
            events = ev.to_pandas()
            for cid in missing:
                self._history[cid] = (
                    _table(customers[customers[c.CUSTOMER_ID] == cid], _CUSTOMER_SCHEMA),
                    _table(events[events[c.CUSTOMER_ID] == cid], _EVENT_SCHEMA),
                )
        out_c, out_e = [], []
        for cid in ids:
            self._history.move_to_end(cid)
            cust, ev_ = self._history[cid]
            out_c.append(cust)
            out_e.append(ev_)
        while len(self._history) > HISTORY_CACHE:
            self._history.popitem(last=False)
        return pa.concat_tables(out_c), pa.concat_tables(out_e)

    def features_at(
        self, customer_ids: Sequence[str], online_events: pd.DataFrame, t: datetime
    ) -> pd.DataFrame:
        """The customer-table features of ``customer_ids`` at ``t``.

        Parameters
        ----------
        customer_ids : sequence of str
            Customers of the shop (unknown ones get no row).
        online_events : pandas.DataFrame
            Events posted online (data-contract event columns; ``ts`` naive UTC). Only
            those of ``customer_ids`` with ``as_of <= ts < t`` are read.
        t : datetime
            Evaluation instant (naive UTC), at or after the snapshot time.

        Returns
        -------
        pandas.DataFrame
            One row per known customer, sorted by ``customer_id``, columns as in the
            snapshot's customer table; the :func:`session_columns` equal what
            :func:`features.snapshot.build_snapshot` at ``t`` would give. ``age_years``
            and the ``channel_share_*`` columns are not meaningful here (see module).
        """
        if t < self.as_of:
            raise ValueError(f"t must be at or after the snapshot time {self.as_of}, got {t}")
        ids = sorted({str(x) for x in customer_ids})
        shift = np.datetime64(REFERENCE, "us") - np.datetime64(t, "us")
        online = online_events
        if len(online):
            ts = pd.to_datetime(online[c.TS]).to_numpy(dtype="datetime64[us]")
            keep = (
                online[c.CUSTOMER_ID].astype(str).isin(ids).to_numpy()
                & (ts >= np.datetime64(self.as_of, "us"))
                & (ts < np.datetime64(t, "us"))
            )
            online = online[keep]
        with self._lock:
            customers, history = self._histories(ids)
            events = pa.concat_tables([history, _table(online, _EVENT_SCHEMA)])
            events = events.set_column(
                1, c.TS, pa.array(events[c.TS].to_numpy() + shift, pa.timestamp("us"))
            )
            customers = customers.set_column(
                1,
                c.CREATED_AT,
                pa.array(customers[c.CREATED_AT].to_numpy() + shift, pa.timestamp("us")),
            )
            self._register(customers, events)
            try:
                return customer_features(self._mini, REFERENCE)
            finally:
                self._register(_CUSTOMER_SCHEMA.empty_table(), _EVENT_SCHEMA.empty_table())


__all__ = ["REFERENCE", "SESSION_EVENT_TYPES", "OnlineFeatures", "session_columns"]
