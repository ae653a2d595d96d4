"""Repurchase-timing scores of every pair and customer at one cutoff, from a fitted model
or the registered champion.

:func:`repurchase_table` scores every customer x item (or category) pair at T and
derives, per customer, the expected date of the next order of anything repurchasable.
Batch scoring, the recommender's buy-again source and the in-market segments
(:mod:`serving.in_market`) read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features import contract as c
from features.definitions import data_end
from models.repurchase_timing import (
    RepurchaseTimingModel,
    combine_first_purchase,
    distribution_frame,
    expected_days,
    pair_features,
    pair_key,
)

log = logging.getLogger(__name__)

MODEL = "repurchase_timing"


@dataclass(frozen=True)
class RepurchaseScores:
    """Repurchase-timing scores of every pair and customer at one cutoff.

    Attributes
    ----------
    as_of : datetime
        Cutoff T (naive UTC midnight); week w covers days ``(7(w-1), 7w]`` after it.
    level : str
        ``item`` or ``category``.
    pairs : DataFrame
        ``customer_id``, ``item_id`` | ``category``, ``p_week_1..p_week_W``, ``p_none``,
        ``p_within_horizon``, ``expected_days`` (days after T, median given a purchase
        within the horizon), ``expected_date``.
    customers : DataFrame
        ``customer_id``, ``p_next_order_within_horizon``, ``next_order_expected_days``,
        ``next_order_expected_date``: first purchase of any of the customer's pairs
        (pairs assumed independent given their features).
    model_version : str
        Registered version used, or ``"local"`` when a model object was passed in.
    features : DataFrame or None
        The pair features scored, row ``i`` for row ``i`` of ``pairs`` (for explanations).
    """

    as_of: datetime
    level: str
    pairs: pd.DataFrame
    customers: pd.DataFrame
    model_version: str
    features: pd.DataFrame | None = field(default=None, repr=False)


def load_champion(alias: str = "champion") -> tuple[RepurchaseTimingModel, str, str]:
    """Load the registered repurchase-timing model with ``alias``.

    Returns
    -------
    (model, level, version)

    Raises
    ------
    NotTrainedError
        When no version carries the alias.
    """
    from models.repurchase_pyfunc import unwrap_repurchase_model
    from training.registry import load_champion as load_registered

    version, pyfunc = load_registered(MODEL, alias)
    model, level = unwrap_repurchase_model(pyfunc)
    return model, level, str(version)


def repurchase_table(
    settings: Any,
    as_of: datetime | date | str | None = None,
    *,
    data: Path | None = None,
    shop: Any = None,
    snapshot: Any = None,
    model: RepurchaseTimingModel | None = None,
    level: str | None = None,
) -> RepurchaseScores:
    """Score every pair at ``as_of`` and derive each customer's expected next order date.

    Parameters
    ----------
    settings : klantbeeld.settings.Settings
        Data location, MLflow store, ``repurchase_level``.
    as_of : datetime, date or ISO string, optional
        Cutoff T; default the midnight after the last event (scores for "from now on").
    data : Path, optional
        Shop folder; default ``settings.resolved_data_dir`` (ignored when ``shop`` is given).
    shop : features.shop.Shop, optional
        An opened shop (batch scoring passes its own).
    snapshot : features.snapshot.Snapshot, optional
        A snapshot at ``as_of`` already built (skips rebuilding it).
    model : RepurchaseTimingModel, optional
        A fitted model; default the registered ``champion`` (MLflow store of ``settings``).
    level : {"item", "category"}, optional
        Pair level of ``model`` (default ``settings.repurchase_level``); with the champion
        the level it was trained on.

    Returns
    -------
    RepurchaseScores
    """
    from features.shop import open_shop
    from features.snapshot import build_snapshot, normalize_as_of

    version = "local"
    if model is None:
        from training.tracking import configure_mlflow

        configure_mlflow(settings)
        model, level, version = load_champion()
    level = str(level or getattr(settings, "repurchase_level", "item"))
    key = pair_key(level)
    if snapshot is None:
        if shop is None:
            src = Path(data) if data is not None else Path(settings.resolved_data_dir)
            shop = open_shop(src, lenient=settings.lenient, threads=settings.threads)
        t = normalize_as_of(as_of) if as_of is not None else data_end(shop)
        snapshot = build_snapshot(shop, t)
    t = snapshot.as_of
    X = pair_features(snapshot, level)
    dist = model.predict_distribution(X)
    pairs = distribution_frame(dist, X, as_of=t, keys=[c.CUSTOMER_ID, key], max_days=model.max_days)
    cust_ids, comb = combine_first_purchase(dist, X[c.CUSTOMER_ID].to_numpy())
    days = expected_days(comb, max_days=model.max_days)
    customers = pd.DataFrame(
        {
            c.CUSTOMER_ID: cust_ids,
            "p_next_order_within_horizon": 1.0 - comb[:, -1],
            "next_order_expected_days": days,
            "next_order_expected_date": (
                pd.Timestamp(t) + pd.to_timedelta(days, unit="D")
            ).normalize(),
        }
    )
    log.info(
        "repurchase scores at %s: %d pairs, %d customers (model %s)",
        t.date(),
        len(pairs),
        len(customers),
        version,
    )
    return RepurchaseScores(t, level, pairs, customers, version, features=X)
