"""Hidden global parameters and the deterministic intensity curves of the demo shop.

The simulator (:mod:`features.demo_shop.simulate`) and the oracle
(:mod:`features.demo_shop.truth`) both import these, so the oracle integrates exactly the
intensities the simulator draws from. Time is counted in whole days from the shop's start
date (day 0); a day ``d`` covers ``[start + d, start + d + 1)`` in UTC.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import numpy as np

GENERATOR = "klantbeeld-demo-shop"
"""Marker written to ``truth/params.json``; identifies a folder as a demo shop."""

GENERATOR_VERSION = 2

BLOCK_SIZE = 20_000
"""Customers per simulation block. Fixed: every block has its own seed, so the output does
not depend on memory or chunking; one events part file is written per block."""

NEVER = 10**7
"""Day index standing for "never" (no disengagement, no abandoned cart yet)."""


@dataclass(frozen=True)
class ShopParams:
    """Global behaviour constants (identical for every customer).

    Attributes
    ----------
    basket_extra_mean : float
        A purchase session buys ``1 + Poisson(basket_extra_mean)`` item draws.
    abandon_prob : float
        Probability that a non-converting browse session puts an item in the cart
        (an abandoned cart).
    cart_boost : float
        Extra relative session intensity right after an abandoned cart.
    cart_boost_days : float
        e-folding time of the abandoned-cart boost, days.
    email_conv_mult : float
        Conversion probability of an email-click session is ``min(1, q * email_conv_mult)``.
    open_floor : float
        Email open probability is ``o * (open_floor + (1 - open_floor) * a(d))``.
    campaign_every_days : int
        Days between email campaigns.
    jitter_sigma : float
        Log-sd of the replenishment interval around the customer-item cycle.
    return_prob_durable, return_prob_consumable : float
        Probability that a purchased line is returned.
    landing_page_prob : float
        Probability that an online session starts with a page view.
    """

    basket_extra_mean: float = 0.4
    abandon_prob: float = 0.35
    cart_boost: float = 1.5
    cart_boost_days: float = 3.0
    email_conv_mult: float = 3.0
    open_floor: float = 0.1
    campaign_every_days: int = 7
    jitter_sigma: float = 0.3
    return_prob_durable: float = 0.06
    return_prob_consumable: float = 0.015
    landing_page_prob: float = 0.25

    def to_dict(self) -> dict[str, float | int]:
        """Return the parameters as a JSON-serialisable dict."""
        return asdict(self)


PARAMS = ShopParams()

# Weekly profile Monday..Sunday (mean 1) and yearly shape.
_WEEKLY = np.array([1.00, 0.95, 0.95, 1.00, 1.05, 0.85, 1.20])
_WEEKLY = _WEEKLY / _WEEKLY.mean()


def season(days: np.ndarray, start: date) -> np.ndarray:
    """Relative shopping intensity of each day (weekly x yearly, mean about 1).

    Parameters
    ----------
    days : ndarray of int
        Day indices counted from ``start``.
    start : date
        Calendar date of day 0.

    Returns
    -------
    ndarray of float
        Multiplier of the session intensity; peaks in December (gifts) and on Sundays.
    """
    days = np.asarray(days, dtype=np.int64)
    ordinal = start.toordinal() + days
    weekday = (ordinal - 1) % 7  # date.fromordinal(1) is a Monday
    doy = (ordinal - date(start.year, 1, 1).toordinal()) % 365.25
    yearly = (
        1.0
        + 0.12 * np.cos(2 * np.pi * (doy - 15) / 365.25)  # winter above summer
        + 0.55 * np.exp(-0.5 * ((doy - 345) / 9.0) ** 2)  # December gift peak
        + 0.25 * np.exp(-0.5 * ((doy - 332) / 2.0) ** 2)  # Black Friday
    )
    return _WEEKLY[weekday] * yearly


def activity(days: np.ndarray | int, t0: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Engagement ``a(d)``: 1 up to the disengagement day ``t0``, then ``exp(-(d - t0)/tau)``.

    Broadcasts ``days`` against ``t0``/``tau`` (days); returns a value in (0, 1].
    """
    gap = np.maximum(np.asarray(days, dtype=np.float64) - t0, 0.0)
    return np.exp(-gap / tau)


def boost(
    days: np.ndarray | int, last_abandon: np.ndarray, params: ShopParams = PARAMS
) -> np.ndarray:
    """Session-intensity multiplier ``1 + cart_boost * exp(-(d - last_abandon)/cart_boost_days)``.

    ``last_abandon`` is the day of the latest abandoned cart strictly before ``d``
    (``-NEVER`` when none); broadcasts like :func:`activity`.
    """
    gap = np.asarray(days, dtype=np.float64) - last_abandon
    return 1.0 + params.cart_boost * np.exp(-gap / params.cart_boost_days)


def click_factor(interest: np.ndarray) -> np.ndarray:
    """Relative email click probability for the campaign category's interest share."""
    return np.clip(0.4 + 4.8 * interest, 0.0, 3.0)
