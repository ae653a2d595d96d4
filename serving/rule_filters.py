"""Business rules as small pure functions over code arrays, and the names they share.

Each rule answers, for aligned arrays of candidate rows (context codes of customer and
item), which rows may be offered: :func:`keep_available`, :func:`keep_price_band`,
:func:`keep_not_purchased`, :func:`keep_not_recently_sent`, :func:`cap_per_group`; and
:func:`eligibility` checks the channel's consent per recipient. They are tested alone with
tiny fixtures; :func:`serving.rules.apply_rules` chains them over a candidate block.
Column names of candidate and result frames and the reason codes live here too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from serving.context import (
    DAY_NS,
    LAST_TS,
    N_GAPS,
    OWN_CYCLE_DAYS,
    RecContext,
    index_codes,
)
from serving.placements import Placement, PriceBand, PurchasedRule

# Column names of candidate frames and results (not contract columns).
SCORE = "score"
SOURCE = "source"
REASON = "reason"
RANK = "rank"
ELIGIBLE = "eligible"
CONTENT_BLOCK = "content_block"
N_ITEMS = "n_items"

FOR_YOU = "for_you"
IN_CART = "in_cart"
POPULAR_IN = "popular_in:"
UNKNOWN_CUSTOMER = "unknown_customer"
EMPTY_CART = "empty_cart"
NO_ITEMS = "no_items"

#: Item content fields copied onto every returned item, in output order.
CONTENT_FIELDS = (c.TITLE, c.URL, c.IMAGE_URL, c.PRICE, c.CATEGORY)
RECS_COLUMNS = (c.CUSTOMER_ID, RANK, c.ITEM_ID, SCORE, REASON, *CONTENT_FIELDS)
RECIPIENT_COLUMNS = (c.CUSTOMER_ID, ELIGIBLE, REASON, CONTENT_BLOCK, N_ITEMS)

#: "No timestamp" in int64 ns arrays (no purchase, no send).
NO_TS = np.iinfo(np.int64).min


def recipient_index(customers: Any) -> pd.Index:
    """Distinct recipient ids as an object-dtype Index, in first-seen order."""
    values = pd.unique(np.asarray(customers, dtype=object).astype(str).astype(object))
    return pd.Index(np.asarray(values, dtype=object), dtype=object)


def no_consent_reason(channel: str) -> str:
    """Not-eligible reason for a recipient without consent for ``channel``."""
    return f"no_{channel}_consent"


def keep_available(item_codes: np.ndarray, context: RecContext) -> np.ndarray:
    """True where the item is active and in stock."""
    return context.item_available[item_codes]


def keep_price_band(item_codes: np.ndarray, context: RecContext, band: PriceBand) -> np.ndarray:
    """True where the item's price (EUR) lies in the band; items without price fail a band."""
    price = context.item_price[item_codes]
    keep = np.ones(len(item_codes), dtype=bool)
    if band.min is not None:
        keep &= price >= band.min
    if band.max is not None:
        keep &= price <= band.max
    return keep


def overlay_last(
    overlay: pd.DataFrame | None,
    recipient_index: pd.Index,
    context: RecContext,
    row_pos: np.ndarray,
    row_item: np.ndarray,
    placement: str | None = None,
) -> np.ndarray:
    """Latest overlay timestamp (ns) per candidate row, keyed by (recipient position, item)."""
    out = np.full(len(row_pos), NO_TS, dtype=np.int64)
    if overlay is None or len(overlay) == 0 or len(row_pos) == 0:
        return out
    if placement is not None and c.PLACEMENT in overlay.columns:
        overlay = overlay[overlay[c.PLACEMENT].astype(str) == placement]
    pos = index_codes(recipient_index, overlay[c.CUSTOMER_ID])
    item = context.item_codes(overlay[c.ITEM_ID])
    ts = pd.to_datetime(overlay[c.TS]).astype("datetime64[ns]").to_numpy().astype(np.int64)
    ok = (pos >= 0) & (item >= 0)
    if not ok.any():
        return out
    keys = pos[ok].astype(np.int64) * context.n_items + item[ok]
    ts = ts[ok]
    order = np.lexsort((ts, keys))
    keys, ts = keys[order], ts[order]
    last = np.r_[keys[1:] != keys[:-1], True]
    keys, ts = keys[last], ts[last]
    q = row_pos.astype(np.int64) * context.n_items + row_item
    at = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    hit = keys[at] == q
    out[hit] = ts[at[hit]]
    return out


def keep_not_purchased(
    customer_codes: np.ndarray,
    item_codes: np.ndarray,
    context: RecContext,
    rule: PurchasedRule,
    now: int,
    overlay_last_ts: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the purchase-history rule; True where the item may be offered.

    Parameters
    ----------
    customer_codes, item_codes : ndarray of int
        Context codes per candidate row (``-1`` customer: no history).
    context : RecContext
    rule : PurchasedRule
        Days for ordinary items, durables never, consumables inside their window.
    now : int
        Reference instant, ns since the epoch.
    overlay_last_ts : ndarray of int64, optional
        Latest purchase (ns) recorded at run time per row (``int64 min``: none).

    Returns
    -------
    ndarray of bool
    """
    keys = context.pair_keys(customer_codes, item_codes)
    found = context.purchase_pairs.lookup_many(
        keys, {LAST_TS: NO_TS, N_GAPS: 0, OWN_CYCLE_DAYS: np.nan}
    )
    last, n_gaps, own = found[LAST_TS], found[N_GAPS], found[OWN_CYCLE_DAYS]
    if overlay_last_ts is not None:
        last = np.maximum(last, overlay_last_ts)
    bought = last != NO_TS
    days = (now - np.where(bought, last, now)) / DAY_NS
    durable = context.item_durable[item_codes]
    consumable = context.item_repurchasable[item_codes] & ~durable
    item_cycle = context.item_cycle[item_codes]
    use_own = (n_gaps >= rule.min_own_cycles) & (own > 0)
    cycle = np.where(use_own, own, item_cycle)
    known_cycle = cycle > 0  # False for NaN
    with np.errstate(invalid="ignore"):
        in_window = days >= rule.window_open * cycle
        if rule.window_close is not None:
            in_window &= days <= rule.window_close * cycle
    too_recent = days < rule.days
    excluded = np.where(
        durable & rule.durable_never,
        True,
        np.where(consumable & known_cycle, ~in_window, too_recent),
    )
    return ~(bought & excluded)


def keep_not_recently_sent(
    customer_codes: np.ndarray,
    item_codes: np.ndarray,
    context: RecContext,
    days: int,
    now: int,
    placement: str | None = None,
    overlay_last_ts: np.ndarray | None = None,
) -> np.ndarray:
    """True unless the item was sent to the customer in the last ``days`` days.

    A send exactly ``days`` days ago no longer counts (``ts > now - days``). With
    ``placement`` only earlier sends of that placement count.
    """
    table = context.send_pairs if placement is None else context.sends_for_placement(placement)
    last = table.lookup(context.pair_keys(customer_codes, item_codes), LAST_TS, NO_TS)
    if overlay_last_ts is not None:
        last = np.maximum(last, overlay_last_ts)
    return ~((last != NO_TS) & (last > now - days * DAY_NS))


def cap_per_group(keys: np.ndarray, cap: int, exempt: np.ndarray | None = None) -> np.ndarray:
    """True for the first ``cap`` rows of every key, in row order.

    Parameters
    ----------
    keys : ndarray of int
        Group key per row (e.g. recipient x category), rows already in priority order.
    cap : int
        Rows kept per key.
    exempt : ndarray of bool, optional
        Rows always kept (they still count towards the cap).
    """
    rank = rank_within(keys)
    keep = rank < cap
    return keep | exempt if exempt is not None else keep


def rank_within(keys: np.ndarray) -> np.ndarray:
    """0-based position of each row among the rows with the same key, in row order."""
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    idx = np.argsort(keys, kind="stable")
    k = keys[idx]
    start = np.r_[True, k[1:] != k[:-1]]
    ar = np.arange(n)
    first = np.maximum.accumulate(np.where(start, ar, 0))
    out = np.empty(n, dtype=np.int64)
    out[idx] = ar - first
    return out


def rank_sorted(keys: np.ndarray) -> np.ndarray:
    """Like :func:`rank_within` for keys that are already grouped (sorted)."""
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    start = np.r_[True, keys[1:] != keys[:-1]]
    ar = np.arange(n)
    return ar - np.maximum.accumulate(np.where(start, ar, 0))


def eligibility(
    customer_codes: np.ndarray, placement: Placement, context: RecContext
) -> tuple[np.ndarray, np.ndarray]:
    """Consent check for the placement's channel.

    Returns
    -------
    eligible : ndarray of bool
    reason : ndarray of object
        ``None`` where eligible, else ``unknown_customer`` (no consent on record) or
        ``no_<channel>_consent``.
    """
    n = len(customer_codes)
    col = placement.consent_column
    reason = np.full(n, None, dtype=object)
    if col is None:
        return np.ones(n, dtype=bool), reason
    known = customer_codes >= 0
    consent = np.zeros(n, dtype=bool)
    consent[known] = context.consent[col][customer_codes[known]]
    reason[known & ~consent] = no_consent_reason(placement.channel)
    reason[~known] = UNKNOWN_CUSTOMER
    return consent, reason


__all__ = [
    "CONTENT_BLOCK",
    "CONTENT_FIELDS",
    "ELIGIBLE",
    "EMPTY_CART",
    "FOR_YOU",
    "IN_CART",
    "NO_ITEMS",
    "NO_TS",
    "N_ITEMS",
    "POPULAR_IN",
    "RANK",
    "REASON",
    "RECIPIENT_COLUMNS",
    "RECS_COLUMNS",
    "SCORE",
    "SOURCE",
    "UNKNOWN_CUSTOMER",
    "cap_per_group",
    "eligibility",
    "keep_available",
    "keep_not_purchased",
    "keep_not_recently_sent",
    "keep_price_band",
    "no_consent_reason",
    "overlay_last",
    "rank_sorted",
    "rank_within",
    "recipient_index",
]
