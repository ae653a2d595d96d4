"""Model input of the repurchase-timing model from a feature snapshot: one row per pair.

A pair is a customer x item (or customer x category) of the snapshot; its row holds the
pair's cycle features and the customer's features (prefixed ``cust_``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

CUSTOMER_PREFIX = "cust_"
CUSTOMER_GROUPS = ("profile", "rfm", "intervals", "sessions")
"""Customer-level feature groups joined to every pair by default (activity and affinity
groups add width, hence training time, for little gain in timing)."""


def pair_key(level: str) -> str:
    """Return the second key column of a pair: ``item_id`` or ``category``."""
    from features import contract as c

    if level == "item":
        return c.ITEM_ID
    if level == "category":
        return c.CATEGORY
    raise ValueError(f"level must be 'item' or 'category', got {level!r}")


def pair_features(
    snapshot: Any,
    level: str = "item",
    customer_groups: Sequence[str] | None = CUSTOMER_GROUPS,
) -> pd.DataFrame:
    """Model input for every pair of a snapshot: pair features plus customer features.

    Parameters
    ----------
    snapshot : features.snapshot.Snapshot
        Point-in-time snapshot at T.
    level : {"item", "category"}
        ``customer_item`` or ``customer_category`` pairs.
    customer_groups : sequence of str or None
        Feature groups (manifest ``group``) of the customer table to join; None joins
        every numeric customer feature.

    Returns
    -------
    DataFrame
        ``customer_id``, the pair key, the pair's cycle features (``purchases``,
        ``days_since_last`` (days), ``own_cycle_days``, ``median_cycle_days``, ...), then
        every numeric customer-level feature prefixed ``cust_``. One row per pair, in the
        snapshot's order.
    """
    from features import contract as c

    key = pair_key(level)
    pairs = snapshot.customer_item if level == "item" else snapshot.customer_category
    cust = snapshot.customer
    num = [
        col
        for col in cust.columns
        if col != c.CUSTOMER_ID
        and (pd.api.types.is_numeric_dtype(cust[col]) or pd.api.types.is_bool_dtype(cust[col]))
    ]
    if customer_groups is not None:
        wanted = {
            s.name
            for s in snapshot.manifest
            if getattr(s, "entity", "customer") == "customer" and s.group in customer_groups
        }
        num = [col for col in num if col in wanted]
    cust = cust[[c.CUSTOMER_ID, *num]].rename(columns={n: CUSTOMER_PREFIX + n for n in num})
    out = pairs.merge(cust, on=c.CUSTOMER_ID, how="left", sort=False, validate="many_to_one")
    front = [c.CUSTOMER_ID, key]
    return out[front + [col for col in out.columns if col not in front]].reset_index(drop=True)
