"""Model inputs of the binary customer scorers, derived from one feature snapshot.

The scorers read the snapshot's customer table plus a few customer-level *replenishment*
aggregates of its customer x item table (items a customer rebuys on a cycle): when the next
item falls due, how many fall due within 7/30/90 days, how many are overdue. Consumables
that fall due drive a large part of near-term purchases, and a per-customer tree model
cannot read them from the customer x item rows itself. Training, batch scoring and any
caller of the pyfunc model build inputs with :func:`model_inputs`, so they always agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import contract as c
from features.definitions import MEDIAN_CYCLE_DAYS, OWN_CYCLE_DAYS, pair_cycle_days

PREFIX = "repl"
DUE_WINDOWS_DAYS = (7, 30, 90)
GRACE_DAYS = 14.0
"""An item at most this many days past its cycle still counts as *due*, not overdue."""

# customer x item snapshot columns used here (see features/feature_groups.py)
_OWN = OWN_CYCLE_DAYS
_MEDIAN = MEDIAN_CYCLE_DAYS
_SINCE = "days_since_last"
_PURCHASES = "purchases"


def replenishment_columns() -> list[str]:
    """Names of the aggregates :func:`replenishment_features` adds, in order."""
    return [
        f"{PREFIX}_items",
        f"{PREFIX}_purchases",
        f"{PREFIX}_next_due_days",
        f"{PREFIX}_overdue",
        f"{PREFIX}_ratio_max",
        *[f"{PREFIX}_due_{w}d" for w in DUE_WINDOWS_DAYS],
    ]


def replenishment_features(customer_item: pd.DataFrame) -> pd.DataFrame:
    """Customer-level aggregates of repurchasable items (one row per customer with any).

    Per item the cycle is :func:`features.definitions.pair_cycle_days`: the customer's own
    mean cycle when known and positive, else the item's median cycle (days);
    ``due_in = cycle - days_since_last`` (days, negative when late).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``repl_items`` (count), ``repl_purchases`` (count),
        ``repl_next_due_days`` (smallest ``due_in`` above ``-GRACE_DAYS``; days, NaN when
        none), ``repl_overdue`` (items more than ``GRACE_DAYS`` late), ``repl_ratio_max``
        (largest ``days_since_last / cycle`` below 3, ratio) and ``repl_due_<w>d`` (items
        with ``-GRACE_DAYS < due_in <= w`` days).
    """
    cyc = pair_cycle_days(customer_item[_OWN], customer_item[_MEDIAN])
    since = customer_item[_SINCE].to_numpy(dtype=np.float64)
    due_in = cyc - since
    known = np.isfinite(due_in)
    upcoming = known & (due_in > -GRACE_DAYS)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = since / cyc
    d = pd.DataFrame(
        {
            c.CUSTOMER_ID: customer_item[c.CUSTOMER_ID].to_numpy(),
            f"{PREFIX}_items": 1.0,
            f"{PREFIX}_purchases": customer_item[_PURCHASES].to_numpy(dtype=np.float64),
            f"{PREFIX}_next_due_days": np.where(upcoming, due_in, np.nan),
            f"{PREFIX}_overdue": (known & ~upcoming).astype(np.float64),
            f"{PREFIX}_ratio_max": np.where(known & (ratio < 3), ratio, np.nan),
            **{
                f"{PREFIX}_due_{w}d": (upcoming & (due_in <= w)).astype(np.float64)
                for w in DUE_WINDOWS_DAYS
            },
        }
    )
    how = {
        col: "min" if col.endswith("next_due_days") else "max" if col.endswith("_max") else "sum"
        for col in replenishment_columns()
    }
    return d.groupby(c.CUSTOMER_ID, sort=True).agg(how)[replenishment_columns()]


def model_inputs(snapshot) -> pd.DataFrame:
    """The scorers' input frame: ``snapshot.customer`` plus the replenishment aggregates.

    Parameters
    ----------
    snapshot : features.snapshot.Snapshot
        Point-in-time snapshot at T.

    Returns
    -------
    pandas.DataFrame
        One row per row of ``snapshot.customer`` (same order), its columns followed by
        :func:`replenishment_columns` (counts 0 and the rest NaN for customers without
        repurchasable items).
    """
    customer = snapshot.customer
    agg = replenishment_features(snapshot.customer_item)
    extra = agg.reindex(customer[c.CUSTOMER_ID].to_numpy())
    counts = [col for col in agg.columns if col not in (
        f"{PREFIX}_next_due_days", f"{PREFIX}_ratio_max",
    )]  # fmt: skip
    extra[counts] = extra[counts].fillna(0.0)
    out = customer.reset_index(drop=True).copy()
    for col in agg.columns:
        out[col] = extra[col].to_numpy()
    return out


def replenishment_manifest() -> list:
    """Feature specs (:class:`features.manifest.FeatureSpec`) of the replenishment columns."""
    from features.manifest import FeatureSpec

    text = {
        "items": ("count", "repurchasable items the customer bought before T"),
        "purchases": ("count", "orders before T containing those items"),
        "next_due_days": (
            "days",
            f"days until the soonest item falls due (cycle - days since last; items at most "
            f"{GRACE_DAYS:g} days late count, negative then); NaN when none",
        ),
        "overdue": ("count", f"items more than {GRACE_DAYS:g} days past their cycle"),
        "ratio_max": ("ratio", "largest days_since_last / cycle below 3; NaN when none"),
        **{
            f"due_{w}d": ("count", f"items falling due within {w} days after T")
            for w in DUE_WINDOWS_DAYS
        },
    }
    return [
        FeatureSpec(f"{PREFIX}_{k}", "float64", desc, unit, "replenishment", "customer")
        for k, (unit, desc) in text.items()
    ]
