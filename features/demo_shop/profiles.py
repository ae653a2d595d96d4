"""Customers of the demo shop: public profile columns and hidden propensities.

Hidden propensities (written to ``truth/customers.parquet``, never read by features):

- ``lam``: sessions per day while engaged (before season, boost and engagement);
- ``q``: probability that a browse session ends in a purchase;
- ``hazard``: daily probability of disengaging; the disengagement day is
  ``t0 = created_day + Geometric(hazard) - 1`` (memoryless, so given "still engaged on day
  t" the oracle draws ``t0 - t`` from the same geometric law);
- ``tau``: e-folding time (days) of the activity decay after ``t0``;
- ``rho``: probability of actually rebuying a consumable when it is due;
- ``cycle_mult``: customer multiplier of every consumable's median cycle;
- ``open_p``, ``click_p``: email open and click propensities;
- ``store_p``, ``app_p``: channel preferences; ``interest_<k>``: category-choice probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from features import contract as c
from features.demo_shop.catalogue import CATEGORY_NAMES
from features.demo_shop.params import NEVER

CITIES = (
    ("Amsterdam", "10"),
    ("Rotterdam", "30"),
    ("Den Haag", "25"),
    ("Utrecht", "35"),
    ("Eindhoven", "56"),
    ("Groningen", "97"),
    ("Tilburg", "50"),
    ("Almere", "13"),
    ("Breda", "48"),
    ("Nijmegen", "65"),
    ("Apeldoorn", "73"),
    ("Haarlem", "20"),
    ("Arnhem", "68"),
    ("Zwolle", "80"),
    ("Leiden", "23"),
    ("Maastricht", "62"),
)
_CITY_WEIGHTS = np.array([14, 10, 8, 6, 4, 4, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2], dtype=float)
_BASE_INTEREST = np.array([1.1, 0.9, 1.0, 0.8, 0.8, 1.2, 1.3, 0.9])
PRESTART_SHARE = 0.15
"""Share of customers created in the year before day 0 (no simulated history)."""


@dataclass(frozen=True)
class CustomerBlock:
    """One block of customers: the public table and the hidden propensities.

    Attributes
    ----------
    public : pandas.DataFrame
        Contract columns of the ``customers`` table.
    hidden : dict[str, ndarray]
        Hidden per-customer parameters (see module docstring) plus ``created_day``
        (day index of creation, negative before day 0), ``created_sec`` (second of that
        day) and ``t0`` (disengagement day).
    """

    public: pd.DataFrame
    hidden: dict[str, np.ndarray]


def draw_customers(
    rng: np.random.Generator, first: int, n: int, start: date, days: int
) -> CustomerBlock:
    """Draw customers ``first .. first + n - 1`` (0-based) of the shop.

    Parameters
    ----------
    rng : numpy.random.Generator
        The block's generator.
    first, n : int
        Index of the first customer and number of customers in the block.
    start : date
        Day 0 of the simulation.
    days : int
        Simulated days; customers are created over ``[-365, days)`` days.

    Returns
    -------
    CustomerBlock
    """
    pre = rng.random(n) < PRESTART_SHARE
    # in-window signups grow over time (density rising linearly by 2x)
    u = rng.random(n)
    in_window = np.floor(days * (np.sqrt(1 + 3 * u) - 1)).astype(np.int64)
    created_day = np.where(pre, -rng.integers(1, 366, n), np.minimum(in_window, days - 1))
    created_sec = rng.integers(7 * 3600, 23 * 3600, n)

    # one latent "engagement" factor z drives several propensities, so every kind of
    # behaviour (sessions, purchases, email) carries information about the others
    z = rng.standard_normal(n)
    lam = 0.1 * np.exp(0.6 * (0.8 * z + 0.6 * rng.standard_normal(n)))
    q = 1.0 / (1.0 + np.exp(-(-2.6 + 0.35 * z + 0.1 * rng.standard_normal(n))))
    lifetime = 700.0 * np.exp(0.6 * (0.7 * z + 0.5 * rng.standard_normal(n)))
    hazard = 1.0 / lifetime
    tau = rng.uniform(150.0, 250.0, n)
    t0 = created_day + rng.geometric(hazard) - 1
    t0 = np.minimum(t0, NEVER).astype(np.int64)
    rho = rng.beta(8.0, 3.0, n)
    cycle_mult = rng.lognormal(0.0, 0.15, n)
    open_p = 1.0 / (1.0 + np.exp(-(0.3 + 0.5 * z + 0.4 * rng.standard_normal(n))))
    click_p = rng.beta(2.0, 10.0, n)
    store_p = rng.beta(1.0, 9.0, n)
    app_p = rng.beta(2.0, 3.0, n)
    interests = rng.dirichlet(_BASE_INTEREST * 1.5, n)

    consent_email = rng.random(n) < 0.75
    consent_ads = rng.random(n) < np.where(consent_email, 0.7, 0.3)
    gender = rng.choice(np.array(["F", "M", "X"]), n, p=[0.58, 0.40, 0.02])
    # older customers are more loyal: age carries part of the engagement factor z
    age = 44.0 + 14.0 * (0.6 * z + 0.8 * rng.standard_normal(n))
    age_days = (age.clip(18, 90) * 365.25).astype(np.int64)
    city_idx = rng.choice(len(CITIES), n, p=_CITY_WEIGHTS / _CITY_WEIGHTS.sum())
    pc_digits = rng.integers(0, 100, n)
    pc_letters = rng.integers(0, 26, (n, 2))

    ids = np.arange(first, first + n)
    start_dt = datetime(start.year, start.month, start.day)
    created_at = (
        np.datetime64(start_dt, "us")
        + created_day.astype("timedelta64[D]").astype("timedelta64[us]")
        + created_sec.astype("timedelta64[s]").astype("timedelta64[us]")
    )
    ref = np.datetime64(start + timedelta(days=days), "D")
    birth = ref - age_days.astype("timedelta64[D]")
    letters = np.array(list("ABCDEFGHJKLMNPRSTVWXZABCDE"))
    public = pd.DataFrame(
        {
            c.CUSTOMER_ID: [f"C{i + 1:07d}" for i in ids],
            c.CREATED_AT: created_at,
            c.EMAIL: [f"c{i + 1:07d}@example.com" for i in ids],
            c.PHONE: [f"+3161{(i * 7919) % 10_000_000:07d}" for i in ids],
            c.BIRTH_DATE: birth,
            c.GENDER: gender,
            c.POSTCODE: [
                f"{CITIES[k][1]}{d:02d} {letters[a]}{letters[b]}"
                for k, d, (a, b) in zip(city_idx, pc_digits, pc_letters, strict=True)
            ],
            c.CITY: [CITIES[k][0] for k in city_idx],
            c.CONSENT_EMAIL: consent_email,
            c.CONSENT_ADS: consent_ads,
        }
    )
    hidden: dict[str, np.ndarray] = {
        "created_day": created_day.astype(np.int64),
        "created_sec": created_sec.astype(np.int64),
        "lam": lam,
        "q": q,
        "hazard": hazard,
        "tau": tau,
        "t0": t0,
        "rho": rho,
        "cycle_mult": cycle_mult,
        "open_p": open_p,
        "click_p": click_p,
        "store_p": store_p,
        "app_p": app_p,
        "consent_email": consent_email,
    }
    for k in range(len(CATEGORY_NAMES)):
        hidden[f"interest_{k}"] = interests[:, k]
    return CustomerBlock(public=public, hidden=hidden)


def interests_of(hidden: dict[str, np.ndarray] | pd.DataFrame) -> np.ndarray:
    """Stack the ``interest_<k>`` columns into an (n_customers, n_categories) array."""
    return np.column_stack(
        [np.asarray(hidden[f"interest_{k}"]) for k in range(len(CATEGORY_NAMES))]
    )
