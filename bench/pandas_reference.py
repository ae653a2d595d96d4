"""A straightforward pandas implementation of the customer-level snapshot features.

The baseline of ``bench/features.py``: read the Parquet files with pandas, filter to
``ts < T``, and compute every customer-level column of :mod:`features.snapshot` with
plain ``groupby`` calls, one per feature family. Written independently of the Ibis
builder (only the column-naming helper is shared) so that agreement of the two is a
real check of both.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from features import feature_groups as fg

DAY = pd.Timedelta(days=1)


def _read(data: Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read ``<table>.parquet`` or the folder ``<table>/`` of Parquet parts."""
    single = data / f"{table}.parquet"
    path = single if single.exists() else data / table
    return pd.read_parquet(path, columns=columns)


def _days(as_of: datetime, ts: pd.Series) -> pd.Series:
    return (pd.Timestamp(as_of) - ts) / DAY


def customer_features_pandas(data: Path, as_of: datetime) -> pd.DataFrame:
    """Customer-level features of the shop in ``data`` at ``as_of``, computed with pandas.

    Parameters
    ----------
    data : Path
        Shop folder with ``customers``, ``items`` and ``events`` as Parquet.
    as_of : datetime
        Snapshot time T (naive UTC).

    Returns
    -------
    pandas.DataFrame
        One row per customer created before T, sorted by ``customer_id``, with the
        columns of the customer table of :func:`features.snapshot.build_snapshot`.
    """
    T = pd.Timestamp(as_of)
    customers = _read(data, c.CUSTOMERS)
    items = _read(data, c.ITEMS, [c.ITEM_ID, c.CATEGORY])
    ev = _read(
        data,
        c.EVENTS,
        [
            c.CUSTOMER_ID,
            c.TS,
            c.EVENT_TYPE,
            c.ITEM_ID,
            c.VALUE,
            c.CHANNEL,
            c.SESSION_ID,
            c.ORDER_ID,
        ],
    )
    ev = ev[ev[c.TS] < T]
    cust = customers[customers[c.CREATED_AT] < T].sort_values(c.CUSTOMER_ID)
    out = pd.DataFrame({c.CUSTOMER_ID: cust[c.CUSTOMER_ID].to_numpy()})
    out = out.set_index(c.CUSTOMER_ID)
    idx = out.index

    def put(name: str, series: pd.Series, fill: float | None = 0) -> None:
        s = series.reindex(idx)
        out[name] = s.fillna(fill) if fill is not None else s

    # profile
    out["tenure_days"] = _days(as_of, cust[c.CREATED_AT]).to_numpy()
    if c.BIRTH_DATE in cust.columns:
        b = pd.to_datetime(cust[c.BIRTH_DATE])
        age = (
            T.year
            - b.dt.year
            - ((b.dt.month > T.month) | ((b.dt.month == T.month) & (b.dt.day > T.day)))
        )
        out["age_years"] = age.where(b < T).astype("float64").to_numpy()
    else:
        out["age_years"] = np.nan

    # orders
    cents = (ev[c.VALUE].fillna(0.0) * 100).round()
    ev = ev.assign(cents=cents)
    pur = ev[ev[c.EVENT_TYPE] == c.PURCHASE].copy()
    pur["order_key"] = pur[c.ORDER_ID].fillna(pur[c.TS].astype(str))
    orders = pur.groupby([c.CUSTOMER_ID, "order_key"]).agg(ts=(c.TS, "min"), cents=("cents", "sum"))
    orders = orders.reset_index()
    og = orders.groupby(c.CUSTOMER_ID)
    last, first, n = og["ts"].max(), og["ts"].min(), og.size()
    put("recency_days", _days(as_of, last), None)
    put("orders_total", n)
    put("monetary_total", og["cents"].sum() / 100)
    for w in fg.WINDOWS_DAYS:
        put(f"orders_{w}d", orders[orders["ts"] >= T - w * DAY].groupby(c.CUSTOMER_ID).size())
    for w in fg.WINDOWS_DAYS:
        recent = orders[orders["ts"] >= T - w * DAY]
        put(f"monetary_{w}d", recent.groupby(c.CUSTOMER_ID)["cents"].sum() / 100)

    # intervals
    orders = orders.sort_values([c.CUSTOMER_ID, "ts"])
    gaps = orders.groupby(c.CUSTOMER_ID)["ts"].diff().dt.total_seconds()
    orders["gap"] = gaps
    put("first_order_days", _days(as_of, first), None)
    mean = (last - first) / DAY / (n - 1)
    put("interval_mean_days", mean.where(n >= 2), None)
    put("interval_std_days", orders.groupby(c.CUSTOMER_ID)["gap"].std() / 86400.0, None)
    out["recency_over_interval"] = out["recency_days"] / out["interval_mean_days"]

    # sessions
    se = ev[ev[c.SESSION_ID].notna()].assign(
        cart=lambda d: d[c.EVENT_TYPE] == c.ADD_TO_CART,
        bought=lambda d: d[c.EVENT_TYPE] == c.PURCHASE,
    )
    sessions = se.groupby([c.CUSTOMER_ID, c.SESSION_ID]).agg(
        start=(c.TS, "min"), cart=("cart", "any"), bought=("bought", "any")
    )
    sessions = sessions.reset_index()
    for w in fg.WINDOWS_DAYS:
        put(
            f"sessions_{w}d",
            sessions[sessions["start"] >= T - w * DAY].groupby(c.CUSTOMER_ID).size(),
        )
    for w in fg.WINDOWS_DAYS:
        s = sessions[(sessions["start"] >= T - w * DAY) & sessions["cart"] & ~sessions["bought"]]
        put(f"abandoned_carts_{w}d", s.groupby(c.CUSTOMER_ID).size())
    age = _days(as_of, sessions["start"])
    for d in fg.DECAY_DAYS:
        put(f"sessions_decay_{d}d", np.exp(-age / d).groupby(sessions[c.CUSTOMER_ID]).sum(), 0.0)
    put(
        "days_since_last_session",
        _days(as_of, sessions.groupby(c.CUSTOMER_ID)["start"].max()),
        None,
    )

    # activity
    put("events_total", ev.groupby(c.CUSTOMER_ID).size())
    for agg in fg.group("activity").aggregates:
        of_type = ev[ev[c.EVENT_TYPE].isin(agg.event_types)]
        for w in fg.WINDOWS_DAYS:
            sel = of_type[of_type[c.TS] >= T - w * DAY].groupby(c.CUSTOMER_ID)
            if agg.how == "count":
                put(f"{agg.name}_{w}d", sel.size())
            else:
                put(f"{agg.name}_{w}d", sel["cents"].sum() / 100)

    # email engagement (sends are optional)
    has_sends = (data / f"{c.SENDS}.parquet").exists() or (data / c.SENDS).is_dir()
    sends = _read(data, c.SENDS, [c.CUSTOMER_ID, c.TS]) if has_sends else None
    for w in fg.WINDOWS_DAYS:
        if sends is None:
            out[f"email_sends_{w}d"] = 0
        else:
            recent = sends[(sends[c.TS] < T) & (sends[c.TS] >= T - w * DAY)]
            put(f"email_sends_{w}d", recent.groupby(c.CUSTOMER_ID).size())
        sent = out[f"email_sends_{w}d"].astype("float64")
        out[f"email_open_rate_{w}d"] = (out[f"email_opens_{w}d"] / sent).where(sent > 0)

    # recency by type
    last_by_type = ev.groupby([c.CUSTOMER_ID, c.EVENT_TYPE])[c.TS].max().unstack()
    for etype in c.CORE_EVENT_TYPES:
        if etype in last_by_type.columns:
            put(f"days_since_last_{etype}", _days(as_of, last_by_type[etype]), None)
        else:
            out[f"days_since_last_{etype}"] = np.nan

    # category affinity
    cat_names = fg.sanitized_names([v for v in items[c.CATEGORY].unique() if v is not None])
    lines = ev[ev[c.EVENT_TYPE].isin([c.PRODUCT_VIEW, c.PURCHASE])].merge(items, on=c.ITEM_ID)
    for etype, prefix in ((c.PRODUCT_VIEW, "view_share"), (c.PURCHASE, "purchase_share")):
        counts = lines[lines[c.EVENT_TYPE] == etype].groupby([c.CUSTOMER_ID, c.CATEGORY]).size()
        counts = counts.unstack(fill_value=0)
        total = counts.sum(axis=1)
        for value, frag in cat_names.items():
            col = counts[value] if value in counts.columns else pd.Series(0, index=counts.index)
            put(f"{prefix}_{frag}", col / total, None)

    # channel mix
    channel_names = fg.sanitized_names(list(ev[c.CHANNEL].dropna().unique()))
    ch = ev[ev[c.CHANNEL].notna()].groupby([c.CUSTOMER_ID, c.CHANNEL]).size().unstack(fill_value=0)
    ch_total = ch.sum(axis=1)
    for value, frag in channel_names.items():
        put(f"channel_share_{frag}", ch[value] / ch_total, None)

    # lifecycle (independent implementation of the documented rule)
    nn = out["orders_total"]
    rec, fst, mi = out["recency_days"], out["first_order_days"], out["interval_mean_days"]
    overdue = (nn >= 2) & (rec > np.maximum(2 * mi, 90))
    stage = np.where(
        nn == 0,
        fg.ACQUISITION,
        np.where(
            (rec > 180) | overdue,
            fg.WIN_BACK,
            np.where(nn == 1, fg.ACTIVATION, np.where(fst < 180, fg.DEVELOPMENT, fg.RETENTION)),
        ),
    )
    out["lifecycle_stage"] = pd.Categorical(stage, categories=list(fg.LIFECYCLE_STAGES))
    for name in fg.LIFECYCLE_STAGES:
        out[f"lifecycle_{name}"] = (stage == name).astype("int8")
    return out.reset_index()
