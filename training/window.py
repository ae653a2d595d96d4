"""The time range a training job reads: the data's, or the data cut at ``train_as_of``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from features import contract as c
from features.definitions import end_of_day
from klantbeeld.errors import ConfigError


def data_range(shop: Any) -> tuple[datetime, datetime]:
    """First event time and the exclusive end of the data (midnight after the last event).

    Parameters
    ----------
    shop : features.shop.Shop

    Returns
    -------
    (datetime, datetime)
        Naive UTC.

    Raises
    ------
    ConfigError
        The shop has no events.
    """
    ev = shop.events
    row = ev.aggregate(lo=ev[c.TS].min(), hi=ev[c.TS].max()).to_pandas().iloc[0]
    if pd.isna(row["hi"]):
        raise ConfigError(f"data {shop.source} hold no events (events table) to train on")
    lo, hi = pd.Timestamp(row["lo"]).to_pydatetime(), pd.Timestamp(row["hi"]).to_pydatetime()
    end = end_of_day(hi)
    return lo, end


def training_window(shop: Any, settings: Any) -> tuple[Any, tuple[datetime, datetime]]:
    """The shop a training job reads and its time range, honouring ``settings.train_as_of``.

    Parameters
    ----------
    shop : features.shop.Shop
    settings : klantbeeld.settings.Settings
        With ``train_as_of`` set, the shop is cut there (only events before it,
        :meth:`features.shop.Shop.until`) and the range ends there at the latest.

    Returns
    -------
    (Shop, (datetime, datetime))
        The shop to read, its first event and the exclusive end (naive UTC).

    Raises
    ------
    ConfigError
        No event lies before ``train_as_of``.
    """
    as_of = settings.train_as_of
    if as_of is None:
        return shop, data_range(shop)
    as_of = as_of.replace(tzinfo=None)
    cut = shop.until(as_of)
    ev = cut.events
    if int(ev.count().to_pyarrow().as_py()) == 0:
        raise ConfigError(f"--as-of {as_of:%Y-%m-%d}: data {shop.source} hold no event before it")
    start, end = data_range(cut)
    return cut, (start, min(end, as_of))
