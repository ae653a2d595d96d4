"""Business rules over a ranked candidate frame, vectorised (no per-customer loops).

The entry point is :func:`apply_rules`: ranked candidates (``customer_id, item_id, score,
source, reason``) for a set of recipients, a :class:`~serving.placements.Placement` and a
:class:`~serving.context.RecContext` go in; per-recipient eligibility and the top
``n_items`` per recipient (rank, score, reason code, item content fields) come out.

Each rule is also a small pure function over code arrays (``keep_available``,
``keep_price_band``, ``keep_not_purchased``, ``keep_not_recently_sent``, ``cap_per_group``,
:func:`eligibility`) so it can be tested alone with tiny fixtures.

Reason codes of returned items: ``bought_before``, ``similar_to:<item_id>``, ``viewed``,
``popular_in:<segment>``, ``for_you`` (from the candidate sources), ``in_cart`` (cart items
of cart_abandonment) and ``popular_in:<category>`` / ``popular_in:all`` (fallback).
Reasons of a not-eligible recipient: ``unknown_customer``, ``no_email_consent`` /
``no_ads_consent``, ``empty_cart``, ``no_items``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from models.recommender.block import CandidateBlock
from serving.content_blocks import choose_content_blocks
from serving.context import (
    DAY_NS,
    LAST_TS,
    N_GAPS,
    OWN_CYCLE_DAYS,
    RecContext,
    index_codes,
    now_ns,
)
from serving.placements import Placement, PriceBand, PurchasedRule

log = logging.getLogger(__name__)

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

_NO_TS = np.iinfo(np.int64).min
_TIER_CART, _TIER_MODEL, _TIER_FALLBACK = 0, 1, 2
#: Reason codes from here on name an entry of the candidate block (see ``_Labels``).
_BLOCK_CODE = np.int64(1) << 40


def recipient_index(customers: Any) -> pd.Index:
    """Distinct recipient ids as an object-dtype Index, in first-seen order."""
    values = pd.unique(np.asarray(customers, dtype=object).astype(str).astype(object))
    return pd.Index(np.asarray(values, dtype=object), dtype=object)


def no_consent_reason(channel: str) -> str:
    """Not-eligible reason for a recipient without consent for ``channel``."""
    return f"no_{channel}_consent"


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


# -- single rules (pure, over code arrays) ------------------------------------------------
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


def _overlay_last(
    overlay: pd.DataFrame | None,
    recipient_index: pd.Index,
    context: RecContext,
    row_pos: np.ndarray,
    row_item: np.ndarray,
    placement: str | None = None,
) -> np.ndarray:
    """Latest overlay timestamp (ns) per candidate row, keyed by (recipient position, item)."""
    out = np.full(len(row_pos), _NO_TS, dtype=np.int64)
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
        keys, {LAST_TS: _NO_TS, N_GAPS: 0, OWN_CYCLE_DAYS: np.nan}
    )
    last, n_gaps, own = found[LAST_TS], found[N_GAPS], found[OWN_CYCLE_DAYS]
    if overlay_last_ts is not None:
        last = np.maximum(last, overlay_last_ts)
    bought = last != _NO_TS
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
    last = table.lookup(context.pair_keys(customer_codes, item_codes), LAST_TS, _NO_TS)
    if overlay_last_ts is not None:
        last = np.maximum(last, overlay_last_ts)
    return ~((last != _NO_TS) & (last > now - days * DAY_NS))


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
    rank = _rank_within(keys)
    keep = rank < cap
    return keep | exempt if exempt is not None else keep


def _rank_within(keys: np.ndarray) -> np.ndarray:
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


def _rank_sorted(keys: np.ndarray) -> np.ndarray:
    """Like :func:`_rank_within` for keys that are already grouped (sorted)."""
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


# -- the pipeline --------------------------------------------------------------------------
@dataclass
class _Rows:
    """Candidate rows as aligned arrays (position of the recipient, item code, ...)."""

    pos: np.ndarray
    item: np.ndarray
    score: np.ndarray
    tier: np.ndarray
    reason: np.ndarray  # int codes into the label list

    def take(self, idx: np.ndarray) -> _Rows:
        return _Rows(*(a[idx] for a in (self.pos, self.item, self.score, self.tier, self.reason)))

    @staticmethod
    def concat(parts: list[_Rows]) -> _Rows:
        return _Rows(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("pos", "item", "score", "tier", "reason")
            )
        )

    def __len__(self) -> int:
        return len(self.pos)


def _sorted(rows: _Rows) -> _Rows:
    """Rows in priority order: recipient, then tier (cart, model, fallback), then score
    descending; ties keep their input order. Already ordered input is not re-sorted."""
    if len(rows) < 2:
        return rows
    dpos = np.diff(rows.pos)
    dtier = np.diff(rows.tier.astype(np.int16))
    in_order = (dpos > 0) | (
        (dpos == 0) & ((dtier > 0) | ((dtier == 0) & (np.diff(rows.score) <= 0)))
    )
    if in_order.all():
        return rows
    return rows.take(np.lexsort((-rows.score, rows.tier, rows.pos)))


def _empty_rows() -> _Rows:
    return _Rows(
        np.empty(0, np.int64),
        np.empty(0, np.int64),
        np.empty(0, float),
        np.empty(0, np.int8),
        np.empty(0, np.int64),
    )


class _Labels:
    """Reason strings as integer codes."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self._index: dict[str, int] = {}
        self._block: CandidateBlock | None = None

    def code(self, label: str) -> int:
        if label not in self._index:
            self._index[label] = len(self.labels)
            self.labels.append(label)
        return self._index[label]

    def block_codes(self, block: CandidateBlock, rows: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Codes standing for the reasons of block entries, resolved only in :meth:`strings`."""
        self._block = block
        return _BLOCK_CODE + rows.astype(np.int64) * block.items.shape[1] + slots

    def strings(self, codes: np.ndarray) -> np.ndarray:
        """Reason texts of ``codes`` (block reasons are worked out here, for these rows only)."""
        out = np.empty(len(codes), dtype=object)
        own = codes < _BLOCK_CODE
        if own.any():
            out[own] = np.array(self.labels, dtype=object)[codes[own]]
        block = self._block
        if block is not None and not own.all():
            r, k = np.divmod(codes[~own] - _BLOCK_CODE, block.items.shape[1])
            out[~own] = block.reason_labels[block.reasons(r, k)]
        return out

    def codes(self, values: pd.Series) -> np.ndarray:
        codes, uniques = pd.factorize(values)
        mapping = np.array([self.code(str(u)) for u in uniques] + [self.code(FOR_YOU)])
        return mapping[np.where(codes >= 0, codes, len(uniques))].astype(np.int64)


def apply_rules(
    candidates: pd.DataFrame | CandidateBlock | None,
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
    candidates : DataFrame, CandidateBlock or None
        Ranked candidates ``customer_id, item_id, score`` (higher is better) with optional
        ``source`` (rows of sources the placement does not list are dropped) and
        ``reason`` (missing -> ``for_you``). Several rows per (customer, item) are allowed;
        the best one counts. A :class:`~models.recommender.block.CandidateBlock` (the
        batch path: rows already ranked, one per customer, sources already filtered)
        gives the same result without a long frame. ``None``: no model candidates
        (fallback only).
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
    """
    rules = placement.rules
    recipients = recipient_index(customers)
    m = len(recipients)
    ccode = context.customer_codes(recipients)
    t_now = now_ns(now) if now is not None else context.now_ns
    eligible, why = eligibility(ccode, placement, context)
    labels = _Labels()

    parts: list[_Rows] = []
    if rules.include_cart:
        cart_rows = _cart_rows(recipients, ccode, context, rules.cart_days, t_now, labels)
        cart_rows = _drop_bought_since_cart(cart_rows, recent_purchases, recipients, context)
        if rules.require_cart:
            has_cart = np.zeros(m, dtype=bool)
            has_cart[cart_rows.pos] = True
            newly = eligible & ~has_cart
            eligible &= has_cart
            why[newly] = EMPTY_CART
        parts.append(cart_rows)
    if isinstance(candidates, CandidateBlock):
        parts.append(_block_rows(candidates, recipients, placement, context, labels))
    elif candidates is not None and len(candidates):
        parts.append(_model_rows(candidates, recipients, placement, context, labels))
    rows = _Rows.concat(parts) if parts else _empty_rows()
    rows = rows.take(np.flatnonzero(eligible[rows.pos]))

    run = _Selector(placement, context, ccode, recipients, t_now, recent_sends, recent_purchases)
    # a block holds each item once per customer: with distinct customers and no cart rows
    # there is nothing to de-duplicate on the first pass
    distinct = (
        isinstance(candidates, CandidateBlock)
        and not rules.include_cart
        and len(pd.unique(candidates.customer_ids)) == len(candidates)
    )
    kept = run.select(rows, distinct=distinct)

    if placement.fallback == "popular":
        counts = np.bincount(kept.pos, minlength=m)
        short = eligible & (counts < placement.n_items)
        if short.any():
            again = kept.take(np.flatnonzero(short[kept.pos]))
            fill = _fallback_rows(np.flatnonzero(short), ccode, placement, context, labels)
            refilled = run.select(_Rows.concat([again, fill]))
            kept = _Rows.concat([kept.take(np.flatnonzero(~short[kept.pos])), refilled])
            kept = _sorted(kept)

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
    return RuleResult(recipient_frame, _recs_frame(kept, recipients, context, labels))


class _Selector:
    """Runs the row-level rules, dedupe, per-category cap and top-n on candidate rows."""

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

    def select(self, rows: _Rows, distinct: bool = False) -> _Rows:
        """Rules, per-category cap and top-n over ``rows``.

        ``distinct``: the caller knows no (recipient, item) pair repeats (skips the
        de-duplication pass).
        """
        ctx, rules = self.context, self.placement.rules
        if len(rows) == 0:
            return rows
        rows = _sorted(rows)
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
        not_cart = rows.tier != _TIER_CART
        cust = self.ccode[rows.pos]
        if rules.exclude_purchased is not None:
            over = _overlay_last(self.recent_purchases, self.recipients, ctx, rows.pos, rows.item)
            ok = keep_not_purchased(cust, rows.item, ctx, rules.exclude_purchased, self.t_now, over)
            keep &= ok | ~not_cart
        if rules.exclude_sent_days is not None:
            scope = self.placement.name if rules.sent_same_placement_only else None
            over = _overlay_last(
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
            cap = cap_per_group(key, rules.max_per_category, exempt=rows.tier[idx] == _TIER_CART)
            idx = idx[cap]
        idx = idx[_rank_sorted(rows.pos[idx]) < self.placement.n_items]
        return rows.take(idx)


def _model_rows(
    candidates: pd.DataFrame,
    recipients: pd.Index,
    placement: Placement,
    context: RecContext,
    labels: _Labels,
) -> _Rows:
    """Encode model candidates; drop other sources and unknown items; keep max_candidates."""
    cand = candidates
    if SOURCE in cand.columns:
        codes, uniques = pd.factorize(cand[SOURCE])
        allowed = np.append(
            np.isin(np.asarray(uniques, dtype=object), placement.candidate_sources), False
        )
        mask = allowed[np.where(codes >= 0, codes, len(uniques))]
        if not mask.all():
            cand = cand[mask]
    pos = index_codes(recipients, cand[c.CUSTOMER_ID])
    item = context.item_codes(cand[c.ITEM_ID])
    score = cand[SCORE].to_numpy(dtype=float)
    reason = (
        labels.codes(cand[REASON])
        if REASON in cand.columns
        else np.full(len(cand), labels.code(FOR_YOU), dtype=np.int64)
    )
    ok = (pos >= 0) & (item >= 0) & np.isfinite(score)
    n_unknown = int(((pos >= 0) & (item < 0)).sum())
    if n_unknown:
        log.warning("%d candidate rows name items missing from the catalogue; dropped", n_unknown)
    idx = np.flatnonzero(ok) if not ok.all() else np.arange(len(ok))
    rows = _Rows(
        pos[idx].astype(np.int64),
        item[idx],
        score[idx],
        np.full(len(idx), _TIER_MODEL, dtype=np.int8),
        reason[idx],
    )
    rows = _sorted(rows)
    return rows.take(np.flatnonzero(_rank_sorted(rows.pos) < placement.max_candidates))


def _block_rows(
    block: CandidateBlock,
    recipients: pd.Index,
    placement: Placement,
    context: RecContext,
    labels: _Labels,
) -> _Rows:
    """Encode a candidate block: the same rows as :func:`_model_rows` on its long frame.

    Item positions map to context codes through one cached array; rows stay in the
    block's order (customer, then rank), the first ``max_candidates`` usable ones each.
    """
    if len(block) == 0 or block.items.shape[1] == 0:
        return _empty_rows()
    pos = index_codes(recipients, block.customer_ids)
    codes = context.item_codes_for(block.item_index)
    has = block.items >= 0
    item = np.where(has, codes[np.maximum(block.items, 0)], -1)
    n_unknown = int((has & (item < 0) & (pos >= 0)[:, None]).sum())
    if n_unknown:
        log.warning("%d candidate rows name items missing from the catalogue; dropped", n_unknown)
    ok = (item >= 0) & np.isfinite(block.score) & (pos >= 0)[:, None]
    ok &= np.cumsum(ok, axis=1) <= placement.max_candidates
    r, k = np.nonzero(ok)
    rows = _Rows(
        pos[r].astype(np.int64),
        item[r, k],
        block.score[r, k].astype(float),
        np.full(len(r), _TIER_MODEL, dtype=np.int8),
        labels.block_codes(block, r, k),
    )
    return _sorted(rows)


def _cart_rows(
    recipients: pd.Index,
    ccode: np.ndarray,
    context: RecContext,
    cart_days: int,
    t_now: int,
    labels: _Labels,
) -> _Rows:
    """Open cart lines of the recipients (added in the last ``cart_days`` days), newest first."""
    known = np.flatnonzero(ccode >= 0)
    if len(known) == 0 or len(context.cart_customer) == 0:
        return _empty_rows()
    at = pd.Index(ccode[known]).get_indexer(context.cart_customer)
    recent = context.cart_ts > t_now - cart_days * DAY_NS
    ok = (at >= 0) & recent & (context.cart_ts <= t_now)
    idx = np.flatnonzero(ok)
    ts = context.cart_ts[idx]
    span = max(float(cart_days) * DAY_NS, 1.0)
    return _Rows(
        known[at[idx]].astype(np.int64),
        context.cart_item[idx],
        1.0 + (ts - (t_now - cart_days * DAY_NS)) / span,  # newer cart lines first
        np.full(len(idx), _TIER_CART, dtype=np.int8),
        np.full(len(idx), labels.code(IN_CART), dtype=np.int64),
    )


def _drop_bought_since_cart(
    rows: _Rows, recent_purchases: pd.DataFrame | None, recipients: pd.Index, context: RecContext
) -> _Rows:
    """Cart lines bought at run time (state store) are no longer open."""
    if recent_purchases is None or len(rows) == 0:
        return rows
    bought = _overlay_last(recent_purchases, recipients, context, rows.pos, rows.item)
    return rows.take(np.flatnonzero(bought == _NO_TS))


def _fallback_rows(
    positions: np.ndarray,
    ccode: np.ndarray,
    placement: Placement,
    context: RecContext,
    labels: _Labels,
) -> _Rows:
    """Popular items of each recipient's segment (top category), then popular overall."""
    n_cat = len(context.category_index)
    width = min(context.pool_size, max(20, 4 * placement.n_items))
    codes = ccode[positions]
    seg = np.where(codes >= 0, context.customer_segment[np.maximum(codes, 0)], -1)
    seg_row = np.where(seg >= 0, seg, n_cat)
    seg_items = context.pools[seg_row, :width]
    all_items = np.broadcast_to(context.pools[n_cat, :width], seg_items.shape)
    items = np.concatenate([seg_items, all_items], axis=1)
    pos = np.repeat(positions, items.shape[1]).astype(np.int64)
    pool_label = np.array(
        [labels.code(POPULAR_IN + str(cat)) for cat in context.category_index]
        + [labels.code(POPULAR_IN + "all")],
        dtype=np.int64,
    )
    reasons = np.concatenate(
        [
            np.repeat(pool_label[seg_row], width).reshape(-1, width),
            np.full(seg_items.shape, pool_label[n_cat]),
        ],
        axis=1,
    )
    flat = items.ravel()
    ok = flat >= 0
    item = flat[ok]
    return _Rows(
        pos[ok],
        item,
        context.item_pop_share[item],
        np.full(len(item), _TIER_FALLBACK, dtype=np.int8),
        reasons.ravel()[ok],
    )


def _recs_frame(
    rows: _Rows, recipients: pd.Index, context: RecContext, labels: _Labels
) -> pd.DataFrame:
    data: dict[str, Any] = {
        c.CUSTOMER_ID: recipients.to_numpy(dtype=object)[rows.pos],
        RANK: (_rank_sorted(rows.pos) + 1).astype(np.int64),
        c.ITEM_ID: context.item_id_values[rows.item],
        SCORE: rows.score.astype(float),
        REASON: labels.strings(rows.reason),
    }
    for col in CONTENT_FIELDS:
        data[col] = context.item_content[col][rows.item]
    data = {
        k: pd.Series(v, dtype=object, copy=False)
        if isinstance(v, np.ndarray) and v.dtype == object
        else v
        for k, v in data.items()
    }
    return pd.DataFrame(data, columns=list(RECS_COLUMNS))


__all__ = [
    "RuleResult",
    "apply_rules",
    "cap_per_group",
    "eligibility",
    "keep_available",
    "keep_not_purchased",
    "keep_not_recently_sent",
    "keep_price_band",
    "no_consent_reason",
]
