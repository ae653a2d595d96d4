"""Business rules over ranked candidates, vectorised (no per-customer loops).

The entry point is :func:`apply_rules`: a :class:`~models.recommender.block.CandidateBlock`
of ranked candidates for a set of recipients, a :class:`~serving.placements.Placement`
and a :class:`~serving.context.RecContext` go in; per-recipient eligibility and the top
``n_items`` per recipient (rank, score, reason code, item content fields) come out. A long
frame of candidates (``customer_id, item_id, score, source, reason``) is converted first
with :func:`~serving.rule_rows.candidate_block`.

The rules themselves are small pure functions over code arrays in
:mod:`serving.rule_filters` (``keep_available``, ``keep_price_band``,
``keep_not_purchased``, ``keep_not_recently_sent``, ``cap_per_group``, ``eligibility``),
tested alone with tiny fixtures; the candidate rows (encoding, order, fallback, output
frame) are in :mod:`serving.rule_rows`. This module chains them and re-exports their
public names, so ``from serving.rules import ...`` keeps working.

Reason codes of returned items: ``bought_before``, ``similar_to:<item_id>``, ``viewed``,
``popular_in:<segment>``, ``for_you`` (from the candidate sources), ``in_cart`` (cart items
of cart_abandonment) and ``popular_in:<category>`` / ``popular_in:all`` (fallback).
Reasons of a not-eligible recipient: ``unknown_customer``, ``no_email_consent`` /
``no_ads_consent``, ``empty_cart``, ``no_items``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from features import contract as c
from models.recommender.block import CandidateBlock
from serving.content_blocks import choose_content_blocks
from serving.context import RecContext, now_ns
from serving.placements import Placement
from serving.rule_filters import (
    CONTENT_BLOCK,
    CONTENT_FIELDS,
    ELIGIBLE,
    EMPTY_CART,
    FOR_YOU,
    IN_CART,
    N_ITEMS,
    NO_ITEMS,
    POPULAR_IN,
    RANK,
    REASON,
    RECIPIENT_COLUMNS,
    RECS_COLUMNS,
    SCORE,
    SOURCE,
    UNKNOWN_CUSTOMER,
    cap_per_group,
    eligibility,
    keep_available,
    keep_not_purchased,
    keep_not_recently_sent,
    keep_price_band,
    no_consent_reason,
    overlay_last,
    rank_sorted,
    recipient_index,
)
from serving.rule_rows import (
    TIER_CART,
    Labels,
    Rows,
    block_rows,
    candidate_block,
    cart_rows,
    drop_bought_since_cart,
    fallback_rows,
    recs_frame,
    sort_rows,
)


@dataclass(frozen=True)
class RuleResult:
    """What the rules return for a set of recipients.

    Attributes
    ----------
    recipients : DataFrame
        One row per recipient, in input order: ``customer_id``, ``eligible`` (bool),
        ``reason`` (why not eligible; ``None`` when eligible), ``content_block``
        (``None`` when not eligible or no block is configured), ``n_items``.
    recs : DataFrame
        One row per returned item, sorted by recipient (input order) then ``rank``
        (1 = best): ``customer_id, rank, item_id, score, reason, title, url, image_url,
        price (EUR), category``.
    """

    recipients: pd.DataFrame
    recs: pd.DataFrame


def apply_rules(
    candidates: CandidateBlock,
    customers: Sequence[str] | np.ndarray | pd.Index,
    placement: Placement,
    context: RecContext,
    *,
    now: datetime | None = None,
    recent_sends: pd.DataFrame | None = None,
    recent_purchases: pd.DataFrame | None = None,
) -> RuleResult:
    """Apply the placement's business rules and return the top items per recipient.

    Parameters
    ----------
    candidates : CandidateBlock
        Ranked model candidates, one row per customer, each item once per row, sources
        already limited to the placement's ``candidate_sources``
        (``NextBestOffers.candidate_block``). A long frame of ranked candidates becomes
        one through :func:`~serving.rule_rows.candidate_block`; an empty block
        (``candidate_block(None, context)``) gives the fallback only.
    customers : sequence of str
        Recipients, in output order (duplicates are dropped).
    placement : Placement
    context : RecContext
    now : datetime, optional
        Reference instant (naive UTC); default ``context.now``.
    recent_sends : DataFrame, optional
        Sends recorded at run time (``customer_id, item_id, ts`` and optional
        ``placement``), on top of ``context.sends``.
    recent_purchases : DataFrame, optional
        Purchases recorded at run time (``customer_id, item_id, ts``), on top of
        ``context.purchases``.

    Returns
    -------
    RuleResult
        Per-recipient eligibility and content block, and the returned items.

    Raises
    ------
    TypeError
        ``candidates`` is not a :class:`~models.recommender.block.CandidateBlock`.
    """
    if not isinstance(candidates, CandidateBlock):
        raise TypeError(
            f"candidates must be a CandidateBlock, got {type(candidates).__name__}; convert a "
            "frame of ranked candidates with serving.rules.candidate_block(frame, context)"
        )
    rules = placement.rules
    recipients = recipient_index(customers)
    m = len(recipients)
    ccode = context.customer_codes(recipients)
    t_now = now_ns(now) if now is not None else context.now_ns
    eligible, why = eligibility(ccode, placement, context)
    labels = Labels()

    parts: list[Rows] = []
    if rules.include_cart:
        cart = cart_rows(recipients, ccode, context, rules.cart_days, t_now, labels)
        cart = drop_bought_since_cart(cart, recent_purchases, recipients, context)
        if rules.require_cart:
            has_cart = np.zeros(m, dtype=bool)
            has_cart[cart.pos] = True
            newly = eligible & ~has_cart
            eligible &= has_cart
            why[newly] = EMPTY_CART
        parts.append(cart)
    parts.append(block_rows(candidates, recipients, placement, context, labels))
    rows = Rows.concat(parts)
    rows = rows.take(np.flatnonzero(eligible[rows.pos]))

    run = _Selector(placement, context, ccode, recipients, t_now, recent_sends, recent_purchases)
    # a block holds each item once per customer: with distinct customers and no cart rows
    # there is nothing to de-duplicate on the first pass
    distinct = not rules.include_cart and len(pd.unique(candidates.customer_ids)) == len(candidates)
    kept = run.select(rows, distinct=distinct)

    if placement.fallback == "popular":
        counts = np.bincount(kept.pos, minlength=m)
        short = eligible & (counts < placement.n_items)
        if short.any():
            again = kept.take(np.flatnonzero(short[kept.pos]))
            fill = fallback_rows(np.flatnonzero(short), ccode, placement, context, labels)
            refilled = run.select(Rows.concat([again, fill]))
            kept = Rows.concat([kept.take(np.flatnonzero(~short[kept.pos])), refilled])
            kept = sort_rows(kept)

    counts = np.bincount(kept.pos, minlength=m)
    empty = eligible & (counts == 0)
    why[empty] = NO_ITEMS
    eligible &= ~empty

    blocks = choose_content_blocks(ccode, placement, context)
    blocks[~eligible] = None
    recipient_frame = pd.DataFrame(
        {
            c.CUSTOMER_ID: recipients.to_numpy(dtype=object),
            ELIGIBLE: eligible,
            REASON: pd.Series(why, dtype=object),
            CONTENT_BLOCK: pd.Series(blocks, dtype=object),
            N_ITEMS: counts.astype(np.int64),
        }
    )
    return RuleResult(recipient_frame, recs_frame(kept, recipients, context, labels))


class _Selector:
    """Runs the row-level rules, dedupe, per-category cap and top-n on candidate rows.

    Parameters
    ----------
    placement : Placement
    context : RecContext
    ccode : ndarray of int
        Context code per recipient position (``-1``: unknown).
    recipients : pd.Index
    t_now : int
        Reference instant, ns since the epoch.
    recent_sends, recent_purchases : DataFrame or None
        Run-time overlays (see :func:`apply_rules`).
    """

    def __init__(
        self,
        placement: Placement,
        context: RecContext,
        ccode: np.ndarray,
        recipients: pd.Index,
        t_now: int,
        recent_sends: pd.DataFrame | None,
        recent_purchases: pd.DataFrame | None,
    ) -> None:
        self.placement = placement
        self.context = context
        self.ccode = ccode
        self.recipients = recipients
        self.t_now = t_now
        self.recent_sends = recent_sends
        self.recent_purchases = recent_purchases

    def select(self, rows: Rows, distinct: bool = False) -> Rows:
        """Rules, per-category cap and top-n over ``rows``.

        ``distinct``: the caller knows no (recipient, item) pair repeats (skips the
        de-duplication pass).
        """
        ctx, rules = self.context, self.placement.rules
        if len(rows) == 0:
            return rows
        rows = sort_rows(rows)
        # Dedupe (recipient, item): first occurrence wins (cart before model before fallback).
        if distinct:
            keep = np.ones(len(rows), dtype=bool)
        else:
            pair = rows.pos.astype(np.int64) * ctx.n_items + rows.item
            keep = ~pd.Series(pair).duplicated().to_numpy()
        if rules.exclude_unavailable:
            keep &= keep_available(rows.item, ctx)
        if rules.price_band is not None:
            keep &= keep_price_band(rows.item, ctx, rules.price_band)
        not_cart = rows.tier != TIER_CART
        cust = self.ccode[rows.pos]
        if rules.exclude_purchased is not None:
            over = overlay_last(self.recent_purchases, self.recipients, ctx, rows.pos, rows.item)
            ok = keep_not_purchased(cust, rows.item, ctx, rules.exclude_purchased, self.t_now, over)
            keep &= ok | ~not_cart
        if rules.exclude_sent_days is not None:
            scope = self.placement.name if rules.sent_same_placement_only else None
            over = overlay_last(
                self.recent_sends, self.recipients, ctx, rows.pos, rows.item, placement=scope
            )
            ok = keep_not_recently_sent(
                cust, rows.item, ctx, rules.exclude_sent_days, self.t_now, scope, over
            )
            keep &= ok | ~not_cart
        idx = np.flatnonzero(keep)
        if rules.max_per_category is not None and len(idx):
            n_cat = len(ctx.category_index) + 1
            key = rows.pos[idx].astype(np.int64) * n_cat + ctx.item_category[rows.item[idx]]
            cap = cap_per_group(key, rules.max_per_category, exempt=rows.tier[idx] == TIER_CART)
            idx = idx[cap]
        idx = idx[rank_sorted(rows.pos[idx]) < self.placement.n_items]
        return rows.take(idx)


__all__ = [
    "CONTENT_BLOCK",
    "CONTENT_FIELDS",
    "ELIGIBLE",
    "EMPTY_CART",
    "FOR_YOU",
    "IN_CART",
    "NO_ITEMS",
    "N_ITEMS",
    "POPULAR_IN",
    "RANK",
    "REASON",
    "RECIPIENT_COLUMNS",
    "RECS_COLUMNS",
    "RuleResult",
    "SCORE",
    "SOURCE",
    "UNKNOWN_CUSTOMER",
    "apply_rules",
    "candidate_block",
    "cap_per_group",
    "eligibility",
    "keep_available",
    "keep_not_purchased",
    "keep_not_recently_sent",
    "keep_price_band",
    "no_consent_reason",
    "recipient_index",
]
