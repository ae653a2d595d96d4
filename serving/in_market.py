"""Who is back in the market for what: repurchase-timing scores for batch and segments.

- :func:`repurchase_table` scores every customer x item (or category) pair at T with the
  champion repurchase-timing model and derives, per customer, the expected date of the
  next order of anything repurchasable (used by batch scoring).
- :func:`in_market` lists the pairs whose probability of the next purchase falling in a
  given ISO week is at least ``min_prob`` (``klantbeeld segments in-market``). Customers
  without the needed consent are left out (no consent, no audience membership).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from models.repurchase_timing import (
    RepurchaseTimingModel,
    combine_first_purchase,
    distribution_frame,
    expected_days,
    pair_features,
    pair_key,
    week_columns,
    window_probability,
)

log = logging.getLogger(__name__)

MODEL = "repurchase_timing"
CONSENT_COLUMNS = {"email": c.CONSENT_EMAIL, "ads": c.CONSENT_ADS}


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


def parse_iso_week(week: str) -> tuple[date, date]:
    """Return Monday and Sunday of ISO week ``"YYYY-Www"`` (e.g. ``"2026-W47"``)."""
    try:
        year_s, week_s = week.strip().upper().split("-W")
        monday = date.fromisocalendar(int(year_s), int(week_s), 1)
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"week must look like 'YYYY-Www' (e.g. 2026-W47), got {week!r}") from exc
    return monday, monday + timedelta(days=6)


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
    import mlflow
    from mlflow.exceptions import MlflowException

    from klantbeeld.errors import NotTrainedError
    from models.repurchase_pyfunc import unwrap_repurchase_model
    from training.registry import registered_model_name

    name = registered_model_name(MODEL)
    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise NotTrainedError(
            f"no {name}@{alias}; run `klantbeeld train repurchase_timing` first"
        ) from exc
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    model, level = unwrap_repurchase_model(pyfunc)
    return model, level, str(mv.version)


def _data_end(shop: Any) -> datetime:
    e = shop.events
    hi = pd.Timestamp(e.aggregate(hi=e[c.TS].max()).to_pandas().iloc[0]["hi"])
    return datetime(hi.year, hi.month, hi.day) + timedelta(days=1)


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
        t = normalize_as_of(as_of) if as_of is not None else _data_end(shop)
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


def in_market(
    settings: Any,
    week: str,
    min_prob: float,
    *,
    as_of: datetime | date | str | None = None,
    consent: str | None = "email",
    scores: RepurchaseScores | None = None,
    data: Path | None = None,
    model: RepurchaseTimingModel | None = None,
    level: str | None = None,
) -> pd.DataFrame:
    """Customers back in the market for an item (or category) in ISO week ``week``.

    The probability that the pair's next purchase falls in that Monday-Sunday week is read
    from the predicted distribution (cumulative probability linear within the model's
    weeks after T). The week must start after T minus 6 days and end within the horizon.

    Parameters
    ----------
    settings : klantbeeld.settings.Settings
    week : str
        ISO week ``"YYYY-Www"``.
    min_prob : float
        Keep pairs with ``p_in_market_week >= min_prob`` (probability in [0, 1]).
    as_of : datetime, date or ISO string, optional
        Cutoff T of the scores; default the midnight after the last event.
    consent : {"email", "ads"} or None
        Keep only customers with this consent flag set (customers table); None keeps all.
    scores : RepurchaseScores, optional
        Precomputed :func:`repurchase_table` output (then ``as_of``/``data``/``model`` are
        not used).
    data, model, level :
        As for :func:`repurchase_table`.

    Returns
    -------
    DataFrame
        ``customer_id``, ``item_id`` | ``category``, ``p_in_market_week``,
        ``expected_date``, ``p_within_horizon``; sorted by ``p_in_market_week`` descending,
        then the keys.
    """
    if not 0.0 <= float(min_prob) <= 1.0:
        raise ValueError(f"min_prob must be a probability in [0, 1], got {min_prob}")
    if consent is not None and consent not in CONSENT_COLUMNS:
        raise ValueError(
            f"consent must be one of {sorted(CONSENT_COLUMNS)} or None, got {consent!r}"
        )
    monday, sunday = parse_iso_week(week)
    shop = None
    if scores is None or consent is not None:
        from features.shop import open_shop

        src = Path(data) if data is not None else Path(settings.resolved_data_dir)
        shop = open_shop(src, lenient=settings.lenient, threads=settings.threads)
    if scores is None:
        scores = repurchase_table(settings, as_of, shop=shop, model=model, level=level)
    t = pd.Timestamp(scores.as_of)
    weeks = sum(col.startswith("p_week_") for col in scores.pairs.columns)
    start = (pd.Timestamp(monday) - t).total_seconds() / 86400.0
    end = (pd.Timestamp(sunday) + pd.Timedelta(days=1) - t).total_seconds() / 86400.0
    if end <= 0 or start >= 7 * weeks:
        raise ValueError(
            f"week {week} ({monday}..{sunday}) is outside the forecast horizon "
            f"{t.date()} .. {(t + pd.Timedelta(days=7 * weeks)).date()}"
        )
    if start < 0 or end > 7 * weeks:
        log.warning("week %s only partly inside the forecast horizon from %s", week, t.date())
    key = pair_key(scores.level)
    pairs = scores.pairs
    dist = pairs[[*week_columns(weeks), "p_none"]].to_numpy(dtype=np.float64)
    p = window_probability(dist, max(start, 0.0), min(end, 7.0 * weeks))
    out = pd.DataFrame(
        {
            c.CUSTOMER_ID: pairs[c.CUSTOMER_ID].to_numpy(),
            key: pairs[key].to_numpy(),
            "p_in_market_week": p,
            "expected_date": pairs["expected_date"].to_numpy(),
            "p_within_horizon": pairs["p_within_horizon"].to_numpy(),
        }
    )
    out = out[out["p_in_market_week"] >= float(min_prob)]
    if consent is not None and shop is not None:
        col = CONSENT_COLUMNS[consent]
        cu = shop.customers
        if col in cu.columns:
            ok = cu.filter(cu[col].fill_null(False)).select(c.CUSTOMER_ID).to_pandas()
            out = out[out[c.CUSTOMER_ID].isin(ok[c.CUSTOMER_ID])]
        else:
            log.warning("customers have no %s column: nobody has %s consent", col, consent)
            out = out.iloc[0:0]
    return out.sort_values(
        ["p_in_market_week", c.CUSTOMER_ID, key], ascending=[False, True, True]
    ).reset_index(drop=True)
