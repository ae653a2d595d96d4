"""The demo shop's email campaign calendar, the same for every block of customers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.demo_shop.params import PARAMS, ShopParams


@dataclass(frozen=True)
class Campaigns:
    """The email campaign calendar (same for every block).

    Attributes
    ----------
    day : ndarray of int
        Send day of each campaign.
    category : ndarray of int
        Featured category (drives click probability).
    share : ndarray of float
        Probability that a consenting customer is targeted.
    send_sec : ndarray of int
        Send time, seconds after midnight.
    """

    day: np.ndarray
    category: np.ndarray
    share: np.ndarray
    send_sec: np.ndarray

    def ids(self) -> list[str]:
        """Campaign ids ``K0001`` ... in calendar order."""
        return [f"K{k + 1:04d}" for k in range(len(self.day))]

    def to_frame(self) -> pd.DataFrame:
        """Return the calendar as a DataFrame (for ``truth/campaigns.parquet``)."""
        return pd.DataFrame(
            {
                "campaign_id": self.ids(),
                "day": self.day,
                "category": self.category,
                "share": self.share,
                "send_sec": self.send_sec,
            }
        )


def build_campaigns(
    rng: np.random.Generator, days: int, n_categories: int, params: ShopParams = PARAMS
) -> Campaigns:
    """Draw the campaign calendar: one campaign every ``campaign_every_days`` days."""
    day = np.arange(2, days, params.campaign_every_days, dtype=np.int64)
    n = len(day)
    return Campaigns(
        day=day,
        category=rng.integers(0, n_categories, n),
        share=rng.uniform(0.5, 0.9, n),
        send_sec=rng.integers(8 * 3600, 10 * 3600, n),
    )
