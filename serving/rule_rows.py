"""Candidate rows of the rule pipeline: encoding, priority order and the output frame.

:func:`serving.rules.apply_rules` works on :class:`Rows` -- aligned arrays of recipient
position, item code, score, tier (cart line, model candidate, fallback) and reason code --
built here from a :class:`~models.recommender.block.CandidateBlock` (:func:`block_rows`),
the recipients' open carts (:func:`cart_rows`) and the popular fallback
(:func:`fallback_rows`), and turned into the returned items frame by :func:`recs_frame`.
:func:`candidate_block` turns a long frame of ranked candidates into the block that
:func:`~serving.rules.apply_rules` takes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from models.recommender.block import CandidateBlock
from serving.context import DAY_NS, RecContext, index_codes
from serving.placements import Placement
from serving.rule_filters import (
    CONTENT_FIELDS,
    FOR_YOU,
    IN_CART,
    NO_TS,
    POPULAR_IN,
    RANK,
    REASON,
    RECS_COLUMNS,
    SCORE,
    SOURCE,
    overlay_last,
    rank_sorted,
)

log = logging.getLogger(__name__)

#: Priority tiers of candidate rows: open cart lines, model candidates, popular fallback.
TIER_CART, TIER_MODEL, TIER_FALLBACK = 0, 1, 2
#: Reason codes from here on name an entry of the candidate block (see ``Labels``).
_BLOCK_CODE = np.int64(1) << 40


@dataclass
class Rows:
    """Candidate rows as aligned arrays (position of the recipient, item code, ...)."""

    pos: np.ndarray
    item: np.ndarray
    score: np.ndarray
    tier: np.ndarray
    reason: np.ndarray  # int codes into the label list

    def take(self, idx: np.ndarray) -> Rows:
        """The rows at positions ``idx`` (indices or a boolean mask), in that order."""
        return Rows(*(a[idx] for a in (self.pos, self.item, self.score, self.tier, self.reason)))

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        """``parts`` one after the other."""
        return Rows(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("pos", "item", "score", "tier", "reason")
            )
        )

    def __len__(self) -> int:
        return len(self.pos)


def sort_rows(rows: Rows) -> Rows:
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


def empty_rows() -> Rows:
    """No rows (typed empty arrays)."""
    return Rows(
        np.empty(0, np.int64),
        np.empty(0, np.int64),
        np.empty(0, float),
        np.empty(0, np.int8),
        np.empty(0, np.int64),
    )


class Labels:
    """Reason strings as integer codes."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self._index: dict[str, int] = {}
        self._block: CandidateBlock | None = None

    def code(self, label: str) -> int:
        """Code of ``label`` (a new one on first use)."""
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


def block_rows(
    block: CandidateBlock,
    recipients: pd.Index,
    placement: Placement,
    context: RecContext,
    labels: Labels,
) -> Rows:
    """Encode a candidate block as model rows (tier ``TIER_MODEL``).

    Entries of customers who are not recipients, of items missing from the context's
    catalogue (logged) and with a non-finite score are dropped. Item positions map to
    context codes through one cached array; rows stay in the block's order (customer,
    then rank), the first ``max_candidates`` usable ones each.
    """
    if len(block) == 0 or block.items.shape[1] == 0:
        return empty_rows()
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
    rows = Rows(
        pos[r].astype(np.int64),
        item[r, k],
        block.score[r, k].astype(float),
        np.full(len(r), TIER_MODEL, dtype=np.int8),
        labels.block_codes(block, r, k),
    )
    return sort_rows(rows)


def cart_rows(
    recipients: pd.Index,
    ccode: np.ndarray,
    context: RecContext,
    cart_days: int,
    t_now: int,
    labels: Labels,
) -> Rows:
    """Open cart lines of the recipients (added in the last ``cart_days`` days), newest first."""
    known = np.flatnonzero(ccode >= 0)
    if len(known) == 0 or len(context.cart_customer) == 0:
        return empty_rows()
    at = pd.Index(ccode[known]).get_indexer(context.cart_customer)
    recent = context.cart_ts > t_now - cart_days * DAY_NS
    ok = (at >= 0) & recent & (context.cart_ts <= t_now)
    idx = np.flatnonzero(ok)
    ts = context.cart_ts[idx]
    span = max(float(cart_days) * DAY_NS, 1.0)
    return Rows(
        known[at[idx]].astype(np.int64),
        context.cart_item[idx],
        1.0 + (ts - (t_now - cart_days * DAY_NS)) / span,  # newer cart lines first
        np.full(len(idx), TIER_CART, dtype=np.int8),
        np.full(len(idx), labels.code(IN_CART), dtype=np.int64),
    )


def drop_bought_since_cart(
    rows: Rows, recent_purchases: pd.DataFrame | None, recipients: pd.Index, context: RecContext
) -> Rows:
    """Cart lines bought at run time (state store) are no longer open."""
    if recent_purchases is None or len(rows) == 0:
        return rows
    bought = overlay_last(recent_purchases, recipients, context, rows.pos, rows.item)
    return rows.take(np.flatnonzero(bought == NO_TS))


def fallback_rows(
    positions: np.ndarray,
    ccode: np.ndarray,
    placement: Placement,
    context: RecContext,
    labels: Labels,
) -> Rows:
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
    return Rows(
        pos[ok],
        item,
        context.item_pop_share[item],
        np.full(len(item), TIER_FALLBACK, dtype=np.int8),
        reasons.ravel()[ok],
    )


def recs_frame(
    rows: Rows, recipients: pd.Index, context: RecContext, labels: Labels
) -> pd.DataFrame:
    """The returned items (:data:`~serving.rule_filters.RECS_COLUMNS`) of sorted ``rows``."""
    data: dict[str, Any] = {
        c.CUSTOMER_ID: recipients.to_numpy(dtype=object)[rows.pos],
        RANK: (rank_sorted(rows.pos) + 1).astype(np.int64),
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


def candidate_block(
    candidates: pd.DataFrame | None,
    context: RecContext,
    *,
    sources: Sequence[str] | None = None,
) -> CandidateBlock:
    """A long frame of ranked candidates as the block :func:`serving.rules.apply_rules` takes.

    Parameters
    ----------
    candidates : DataFrame or None
        ``customer_id, item_id, score`` (higher is better) with optional ``source`` and
        ``reason`` (missing or null: ``for_you``). Several rows per (customer, item) may
        appear: the best-scored one counts (the first of equal ones). Rows with a missing
        customer id, an item missing from the context's catalogue (logged) or a non-finite
        score are dropped. None or empty: a block without candidates (fallback only).
    context : RecContext
        Its item catalogue (``context.item_index``) indexes the block's items.
    sources : sequence of str, optional
        Keep only rows whose ``source`` is one of these (a placement's
        ``candidate_sources``); ignored when the frame has no ``source`` column.

    Returns
    -------
    CandidateBlock
        One row per distinct customer id (compared as text), in first-seen order; within
        a row descending score, ties in input order.
    """
    if candidates is None or len(candidates) == 0:
        return _block_of(
            context,
            [],
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0),
            np.empty(0, np.int64),
            ("candidates",),
            np.empty(0, np.int64),
            np.array([FOR_YOU], dtype=object),
        )
    raw, uniques = pd.factorize(candidates[c.CUSTOMER_ID])
    as_text, names = pd.factorize(pd.Index(uniques).astype(str))
    cust = np.where(raw >= 0, as_text[np.maximum(raw, 0)], -1)
    item = context.item_codes(candidates[c.ITEM_ID])
    score = candidates[SCORE].to_numpy(dtype=float)
    keep = cust >= 0
    if SOURCE in candidates.columns:
        src, src_names = pd.factorize(candidates[SOURCE])
        source_names = tuple(str(s) for s in src_names) or ("candidates",)
        if len(source_names) > np.iinfo(np.int8).max:
            raise ValueError(f"candidates: {len(source_names)} distinct sources, at most 127")
        if sources is not None:
            keep &= candidates[SOURCE].isin(list(sources)).to_numpy()
        keep &= src >= 0
    else:
        src, source_names = np.zeros(len(candidates), np.int64), ("candidates",)
    n_unknown = int((keep & (item < 0)).sum())
    if n_unknown:
        log.warning("%d candidate rows name items missing from the catalogue; dropped", n_unknown)
    keep &= (item >= 0) & np.isfinite(score)
    if REASON in candidates.columns:
        rc, r_uniques = pd.factorize(candidates[REASON])
        reason_labels = np.array([str(u) for u in r_uniques] + [FOR_YOU], dtype=object)
        reason = np.where(rc >= 0, rc, len(r_uniques))
    else:
        reason_labels = np.array([FOR_YOU], dtype=object)
        reason = np.zeros(len(candidates), np.int64)
    idx = np.flatnonzero(keep)
    idx = idx[np.lexsort((-score[idx], cust[idx]))]  # stable: ties keep input order
    pair = cust[idx].astype(np.int64) * context.n_items + item[idx]
    idx = idx[~pd.Series(pair).duplicated().to_numpy()]  # the best row of each pair
    return _block_of(
        context,
        names,
        cust[idx],
        item[idx],
        score[idx],
        src[idx],
        source_names,
        reason[idx],
        reason_labels,
    )


def _block_of(
    context: RecContext,
    customer_ids: Any,
    row: np.ndarray,
    item: np.ndarray,
    score: np.ndarray,
    source: np.ndarray,
    source_names: tuple[str, ...],
    reason: np.ndarray,
    reason_labels: np.ndarray,
) -> CandidateBlock:
    """Lay entries sorted by (row, rank) out as the block's (m, k) arrays."""
    m = len(customer_ids)
    slot = rank_sorted(row)
    k = int(slot.max()) + 1 if len(slot) else 0
    items = np.full((m, k), -1, dtype=np.int32)
    scores = np.full((m, k), -np.inf, dtype=np.float64)
    sources = np.full((m, k), -1, dtype=np.int8)
    reasons = np.full((m, k), -1, dtype=np.int32)
    items[row, slot] = item
    scores[row, slot] = score
    sources[row, slot] = source
    reasons[row, slot] = reason
    return CandidateBlock(
        customer_ids=np.asarray(customer_ids, dtype=object),
        items=items,
        score=scores,
        source=sources,
        reason=reasons,
        item_index=context.item_index,
        sources=source_names,
        reason_labels=reason_labels,
        positions=np.arange(m, dtype=np.int64),
    )


__all__ = [
    "Labels",
    "Rows",
    "TIER_CART",
    "TIER_FALLBACK",
    "TIER_MODEL",
    "block_rows",
    "candidate_block",
    "cart_rows",
    "drop_bought_since_cart",
    "empty_rows",
    "fallback_rows",
    "recs_frame",
    "sort_rows",
]
