"""Who is back in the market for what: repurchase-timing scores for batch and segments.

- :func:`training.repurchase_scores.repurchase_table` scores every customer x item (or
  category) pair at T with the champion repurchase-timing model (also used by batch
  scoring and the recommender job).
- :func:`in_market` lists the pairs whose probability of the next purchase falling in a
  given ISO week is at least ``min_prob`` (``klantbeeld segments in-market``). Customers
  without the needed consent are left out (no consent, no audience membership).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from models.repurchase_timing import (
    RepurchaseTimingModel,
    pair_key,
    week_columns,
    window_probability,
)
from training.repurchase_scores import RepurchaseScores, repurchase_table

log = logging.getLogger(__name__)

MODEL = "repurchase_timing"
CONSENT_COLUMNS = {"email": c.CONSENT_EMAIL, "ads": c.CONSENT_ADS}


def parse_iso_week(week: str) -> tuple[date, date]:
    """Return Monday and Sunday of ISO week ``"YYYY-Www"`` (e.g. ``"2026-W47"``)."""
    try:
        year_s, week_s = week.strip().upper().split("-W")
        monday = date.fromisocalendar(int(year_s), int(week_s), 1)
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"week must look like 'YYYY-Www' (e.g. 2026-W47), got {week!r}") from exc
    return monday, monday + timedelta(days=6)


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
