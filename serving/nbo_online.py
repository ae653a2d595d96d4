"""Next-best-offers for the API: a few recipients per call, in well under a millisecond.

:func:`serving.next_best_offer.recommend_for` asks the recommender for candidates and runs
:func:`serving.rules.apply_rules` over pandas frames on every call -- tens of ms for one
recipient, nearly all of it fixed cost. :class:`OnlineNextBestOffers` gives exactly the
same results from work done once per loaded model:

- the ranked candidates of every customer for each placement's sources
  (:func:`models.recommender.nbo_table.cached_tables`: memory-mapped, shared by workers);
- the content block of every customer for each placement;
- the open cart lines grouped by customer.

Per call only the recipients' rows are read and the business rules run on small numpy
arrays through the rule functions of :mod:`serving.rules` (consent, availability, price
band, purchased, recently sent, per-category cap, popular fallback); purchases, sends,
consent changes and erasures recorded online count at once, as on the frame path.
Results are built straight as :class:`RecipientResult` objects, without frames.
A placement whose candidates the tables do not cover (a model without tables, ``n``
beyond the table width) is answered by ``recommend_for``.
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
from models.recommender.block import DEFERRED
from models.recommender.nbo_table import CandidateTable, cached_tables
from models.recommender.next_best import NextBestOffers
from serving.content_blocks import choose_content_blocks
from serving.context import DAY_NS, RecContext, index_codes, now_ns
from serving.next_best_offer import (
    CandidateModel,
    RecipientResult,
    RecommendedItem,
    recommend_for,
    state_overlay,
)
from serving.placements import Placement, PlacementConfig
from serving.rule_filters import NO_TS, overlay_last
from serving.rules import (
    EMPTY_CART,
    IN_CART,
    NO_ITEMS,
    POPULAR_IN,
    cap_per_group,
    eligibility,
    keep_not_purchased,
    keep_not_recently_sent,
    keep_price_band,
)
from serving.state import StateStore

log = logging.getLogger(__name__)

#: Entries kept per customer in a table, at least. Tables keep a placement's
#: ``max_candidates``; a request whose ``n`` asks for more is answered by ``recommend_for``.
MIN_TABLE_WIDTH = 0
#: Up to this many ids are looked up one by one (``Index.get_loc``), more in one pass.
_LOOKUP_ONE_BY_ONE = 64
_CART, _MODEL, _FALLBACK = 0, 1, 2

_TableKey = tuple[int, tuple[str, ...]]


@dataclass
class _Rows:
    """Candidate rows as aligned arrays: recipient position, item code, score, tier, reason
    text, and the model item position of rows whose reason is still to be explained."""

    pos: np.ndarray
    item: np.ndarray
    score: np.ndarray
    tier: np.ndarray
    reason: np.ndarray  # object: reason text (None while deferred)
    deferred: np.ndarray  # int64: model item position to explain, -1 otherwise

    def take(self, idx: np.ndarray) -> _Rows:
        return _Rows(*(getattr(self, f)[idx] for f in _Rows.__dataclass_fields__))

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        return _Rows(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _Rows.__dataclass_fields__)
        )

    def __len__(self) -> int:
        return len(self.pos)


def _rows(pos: Any, item: Any, score: Any, tier: int, reason: Any, deferred: Any = None) -> _Rows:
    n = len(pos)
    reasons = reason if isinstance(reason, np.ndarray) else np.full(n, reason, dtype=object)
    return _Rows(
        np.asarray(pos, dtype=np.int64),
        np.asarray(item, dtype=np.int64),
        np.asarray(score, dtype=np.float64),
        np.full(n, tier, dtype=np.int8),
        reasons,
        np.full(n, -1, dtype=np.int64) if deferred is None else deferred.astype(np.int64),
    )


_EMPTY = _rows(np.empty(0), np.empty(0), np.empty(0), _MODEL, np.empty(0, dtype=object))


def _sorted(rows: _Rows) -> _Rows:
    """Recipient, then tier (cart, model, fallback), then score descending; ties stable."""
    if len(rows) < 2:
        return rows
    return rows.take(np.lexsort((-rows.score, rows.tier, rows.pos)))


def _rank_sorted(keys: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal (grouped) keys."""
    if len(keys) == 0:
        return np.empty(0, dtype=np.int64)
    start = np.r_[True, keys[1:] != keys[:-1]]
    ar = np.arange(len(keys))
    return ar - np.maximum.accumulate(np.where(start, ar, 0))


def _codes(index: pd.Index, ids: list[str]) -> np.ndarray:
    """Position of every id in ``index`` (unique), ``-1`` when absent."""
    if len(ids) > _LOOKUP_ONE_BY_ONE:
        return index_codes(index, np.asarray(ids, dtype=object))
    out = np.empty(len(ids), dtype=np.int64)
    for j, cid in enumerate(ids):
        try:
            loc = index.get_loc(cid)
        except KeyError:
            loc = -1
        if not isinstance(loc, int | np.integer):  # not unique: the general path
            return index_codes(index, np.asarray(ids, dtype=object))
        out[j] = loc
    return out


def _overlay_last(
    overlay: pd.DataFrame | None,
    ids: list[str],
    context: RecContext,
    rows: _Rows,
    placement: str | None = None,
) -> np.ndarray | None:
    """Latest online timestamp (ns) per row, keyed by (recipient, item); None: none at all."""
    if overlay is None or len(overlay) == 0 or len(rows) == 0:
        return None
    out = overlay_last(
        overlay, pd.Index(ids, dtype=object), context, rows.pos, rows.item, placement
    )
    return out if (out != NO_TS).any() else None


class OnlineNextBestOffers:
    """Per-recipient next-best-offers from tables built once per model and context.

    Parameters
    ----------
    context : RecContext
        Rule context the service was loaded with (consent may be replaced per call).
    model : CandidateModel or None
        The served recommender; tables are built for a ``NextBestOffers``. None: every
        recipient gets the placement's popular fallback.
    placements : PlacementConfig
        Placements to build tables and content blocks for (others: built on first use).
    min_width : int
        Candidates kept per customer and table, at least.
    """

    def __init__(
        self,
        context: RecContext,
        model: CandidateModel | None,
        placements: PlacementConfig,
        min_width: int = MIN_TABLE_WIDTH,
    ) -> None:
        self.context = context
        self.model = model
        self.min_width = min_width
        self._tables: dict[_TableKey, CandidateTable] = {}
        self._blocks: dict[str, tuple[Placement, np.ndarray, Any]] = {}
        self._nbo = model if isinstance(model, NextBestOffers) else None
        if self._nbo is not None:
            self._item_codes = context.item_codes_for(self._nbo.ids_.items)
            self._n_missing = int((self._item_codes < 0).sum())
            self._labels = self._nbo.reason_labels()
        order = np.argsort(context.cart_customer, kind="stable")
        self._cart_order = order
        self._cart_sorted = context.cart_customer[order]
        declared = list(placements.placements.values())
        if self._nbo is not None:
            specs: dict[_TableKey, int] = {}
            for pl in declared:
                key = self._key(pl)
                specs[key] = max(specs.get(key, 0), self._width(pl))
            tables = cached_tables(self._nbo, [(k[0], k[1], w) for k, w in specs.items()])
            self._tables = dict(zip(specs, tables, strict=True))
        for pl in declared:
            self._content_blocks(pl)

    # -- what is built once -----------------------------------------------------------
    def table(self, placement: Placement) -> CandidateTable | None:
        """The candidate table of ``placement``'s sources; None without a ``NextBestOffers``
        or when the placement asks for more candidates than a table holds."""
        if self._nbo is None:
            return None
        key = self._key(placement)
        table = self._tables.get(key)
        if table is None:
            table = cached_tables(self._nbo, [(key[0], key[1], self._width(placement))])[0]
            self._tables[key] = table
        return table if table.width >= placement.max_candidates + self._n_missing else None

    @staticmethod
    def _key(placement: Placement) -> _TableKey:
        return placement.n_per_source, tuple(sorted(placement.candidate_sources))

    def _width(self, placement: Placement) -> int:
        """Entries a table keeps per customer: enough for ``max_candidates`` usable ones
        (and ``n`` up to ``min_width``) even where catalogue-less items are skipped."""
        return max(placement.max_candidates, self.min_width) + self._n_missing

    def _content_blocks(self, placement: Placement) -> tuple[np.ndarray, Any]:
        """Block of every customer code (and of unknown customers) for ``placement``."""
        hit = self._blocks.get(placement.name)
        if hit is not None and (
            hit[0].content_blocks == placement.content_blocks
            and hit[0].default_content_block == placement.default_content_block
        ):
            return hit[1], hit[2]
        n = len(self.context.customer_index)
        every = choose_content_blocks(np.arange(n, dtype=np.int64), placement, self.context)
        unknown = choose_content_blocks(np.array([-1], dtype=np.int64), placement, self.context)[0]
        self._blocks[placement.name] = (placement, every, unknown)
        return every, unknown

    # -- per call ---------------------------------------------------------------------
    def recommend(
        self,
        customer_ids: Sequence[str],
        placement: Placement,
        *,
        context: RecContext | None = None,
        state: StateStore | None = None,
        now: datetime | None = None,
    ) -> list[RecipientResult]:
        """One :class:`RecipientResult` per distinct recipient, in input order.

        The same results as :func:`serving.next_best_offer.recommend_for` with this
        object's model (see that function for the parameters).

        Parameters
        ----------
        customer_ids : sequence of str
        placement : Placement
        context : RecContext, optional
            This object's context or a copy of it with other consent flags (default: its
            own context).
        state : StateStore, optional
            Online sends and purchases.
        now : datetime, optional
            Reference instant (naive UTC); default ``context.now``.

        Returns
        -------
        list of RecipientResult
        """
        ctx = self.context if context is None else context
        table = self.table(placement)
        if (
            (self._nbo is None and self.model is not None)
            or (self._nbo is not None and table is None)
            or ctx.affinity_matrix is not self.context.affinity_matrix
        ):
            return recommend_for(
                customer_ids, placement, context=ctx, model=self.model, state=state, now=now
            )
        ids = list(dict.fromkeys(str(x) for x in customer_ids))
        when = now if now is not None else ctx.now
        sends, purchases = state_overlay(state, ids, placement, ctx, when)
        run = _Call(self, placement, ctx, ids, now_ns(when), sends, purchases)
        return run.results(table)

    def positions(self, ids: list[str]) -> np.ndarray:
        """Model row of each recipient (unknown ones: the model's empty last row)."""
        if self._nbo is None:
            raise ValueError("positions needs a NextBestOffers model")
        mpos = _codes(self._nbo.ids_.users, ids)
        mpos[mpos < 0] = len(self._nbo.ids_.users)
        return mpos

    def model_rows(
        self, table: CandidateTable, mpos: np.ndarray, pos: np.ndarray, max_candidates: int
    ) -> _Rows:
        """Table rows of the recipients at positions ``pos`` (model rows ``mpos[pos]``): the
        first ``max_candidates`` usable entries (item in the catalogue, finite score)."""
        rows = mpos[pos]
        items = np.asarray(table.items[rows])
        score = np.asarray(table.score[rows])
        code = np.where(items >= 0, self._item_codes[np.maximum(items, 0)], -1)
        ok = (code >= 0) & np.isfinite(score)
        ok &= np.cumsum(ok, axis=1) <= max_candidates
        r, k = np.nonzero(ok)
        codes = np.asarray(table.reason[rows])[r, k]
        later = codes == DEFERRED
        reason = self._labels[np.where(later, 0, codes)]
        reason[later] = None
        deferred = np.where(later, items[r, k], -1)
        return _rows(pos[r], code[r, k], score[r, k], _MODEL, reason, deferred)

    def explain(self, mpos: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Reason texts of item-kNN rows (model rows ``mpos``, model item positions)."""
        if self._nbo is None:
            raise ValueError("explain needs a NextBestOffers model")
        return self._labels[self._nbo._explain_codes(mpos, items)]

    def cart_lines(self, ccode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Open cart lines of the recipients: (recipient position, context line index),
        each recipient's lines in context order."""
        lo = np.searchsorted(self._cart_sorted, ccode, side="left")
        hi = np.searchsorted(self._cart_sorted, ccode, side="right")
        hi = np.where(ccode >= 0, hi, lo)
        lens = hi - lo
        pos = np.repeat(np.arange(len(ccode)), lens)
        at = np.repeat(lo - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
        return pos, self._cart_order[at]


class _Call:
    """The business rules of one call (the steps of :func:`serving.rules.apply_rules`)."""

    def __init__(
        self,
        owner: OnlineNextBestOffers,
        placement: Placement,
        context: RecContext,
        ids: list[str],
        t_now: int,
        sends: pd.DataFrame | None,
        purchases: pd.DataFrame | None,
    ) -> None:
        self.owner, self.pl, self.ctx, self.ids, self.t_now = owner, placement, context, ids, t_now
        self.sends, self.purchases = sends, purchases
        self.ccode = _codes(context.customer_index, ids)
        self.mpos = np.empty(0, dtype=np.int64)  # model rows, read when a table is used

    def results(self, table: CandidateTable | None) -> list[RecipientResult]:
        pl, ctx, rules = self.pl, self.ctx, self.pl.rules
        m = len(self.ids)
        eligible, why = eligibility(self.ccode, pl, ctx)
        parts: list[_Rows] = []
        if rules.include_cart:
            cart = self._cart_rows(rules.cart_days)
            if rules.require_cart:
                has_cart = np.zeros(m, dtype=bool)
                has_cart[cart.pos] = True
                why[eligible & ~has_cart] = EMPTY_CART
                eligible &= has_cart
            parts.append(cart)
        if table is not None and eligible.any():
            self.mpos = self.owner.positions(self.ids)
            asked = np.flatnonzero(eligible)
            parts.append(self.owner.model_rows(table, self.mpos, asked, pl.max_candidates))
        rows = _Rows.concat(parts) if parts else _EMPTY
        rows = rows.take(np.flatnonzero(eligible[rows.pos]))
        kept = self.select(rows)
        if pl.fallback == "popular":
            counts = np.bincount(kept.pos, minlength=m)
            short = eligible & (counts < pl.n_items)
            if short.any():
                again = kept.take(np.flatnonzero(short[kept.pos]))
                refilled = self.select(_Rows.concat([again, self._fallback_rows(short)]))
                kept = _sorted(
                    _Rows.concat([kept.take(np.flatnonzero(~short[kept.pos])), refilled])
                )
        counts = np.bincount(kept.pos, minlength=m)
        empty = eligible & (counts == 0)
        why[empty] = NO_ITEMS
        eligible &= ~empty
        return self._results(kept, eligible, why)

    def _cart_rows(self, cart_days: int) -> _Rows:
        ctx, t_now = self.ctx, self.t_now
        pos, line = self.owner.cart_lines(self.ccode)
        ts = ctx.cart_ts[line]
        ok = (ts > t_now - cart_days * DAY_NS) & (ts <= t_now)
        pos, line, ts = pos[ok], line[ok], ts[ok]
        span = max(float(cart_days) * DAY_NS, 1.0)
        rows = _rows(
            pos,
            ctx.cart_item[line],
            1.0 + (ts - (t_now - cart_days * DAY_NS)) / span,
            _CART,
            IN_CART,
        )
        bought = _overlay_last(self.purchases, self.ids, ctx, rows)
        return rows if bought is None else rows.take(np.flatnonzero(bought == NO_TS))

    def _fallback_rows(self, short: np.ndarray) -> _Rows:
        """Popular items of each recipient's segment (top category), then popular overall."""
        ctx, pl = self.ctx, self.pl
        positions = np.flatnonzero(short)
        n_cat = len(ctx.category_index)
        width = min(ctx.pool_size, max(20, 4 * pl.n_items))
        codes = self.ccode[positions]
        seg = np.where(codes >= 0, ctx.customer_segment[np.maximum(codes, 0)], -1)
        seg_row = np.where(seg >= 0, seg, n_cat)
        seg_items = ctx.pools[seg_row, :width]
        items = np.concatenate(
            [seg_items, np.broadcast_to(ctx.pools[n_cat, :width], seg_items.shape)], axis=1
        )
        pool_label = np.array(
            [POPULAR_IN + str(cat) for cat in ctx.category_index] + [POPULAR_IN + "all"],
            dtype=object,
        )
        reasons = np.concatenate(
            [
                np.repeat(pool_label[seg_row], width).reshape(-1, width),
                np.full(seg_items.shape, pool_label[n_cat], dtype=object),
            ],
            axis=1,
        )
        flat = items.ravel()
        ok = flat >= 0
        item = flat[ok]
        pos = np.repeat(positions, items.shape[1])[ok]
        return _rows(pos, item, ctx.item_pop_share[item], _FALLBACK, reasons.ravel()[ok])

    def select(self, rows: _Rows) -> _Rows:
        """Dedupe, row rules, per-category cap and top-n (``serving.rules._Selector``)."""
        ctx, pl, rules = self.ctx, self.pl, self.pl.rules
        if len(rows) == 0:
            return rows
        rows = _sorted(rows)
        keep = np.zeros(len(rows), dtype=bool)
        keep[np.unique(rows.pos * ctx.n_items + rows.item, return_index=True)[1]] = True
        if rules.exclude_unavailable:
            keep &= ctx.item_available[rows.item]
        if rules.price_band is not None:
            keep &= keep_price_band(rows.item, ctx, rules.price_band)
        is_cart = rows.tier == _CART
        cust = self.ccode[rows.pos]
        if rules.exclude_purchased is not None:
            over = _overlay_last(self.purchases, self.ids, ctx, rows)
            ok = keep_not_purchased(cust, rows.item, ctx, rules.exclude_purchased, self.t_now, over)
            keep &= ok | is_cart
        if rules.exclude_sent_days is not None:
            scope = pl.name if rules.sent_same_placement_only else None
            over = _overlay_last(self.sends, self.ids, ctx, rows, placement=scope)
            ok = keep_not_recently_sent(
                cust, rows.item, ctx, rules.exclude_sent_days, self.t_now, scope, over
            )
            keep &= ok | is_cart
        idx = np.flatnonzero(keep)
        if rules.max_per_category is not None and len(idx):
            n_cat = len(ctx.category_index) + 1
            key = rows.pos[idx] * n_cat + ctx.item_category[rows.item[idx]]
            idx = idx[cap_per_group(key, rules.max_per_category, exempt=is_cart[idx])]
        idx = idx[_rank_sorted(rows.pos[idx]) < pl.n_items]
        return rows.take(idx)

    def _results(self, kept: _Rows, eligible: np.ndarray, why: np.ndarray) -> list[RecipientResult]:
        ctx, pl = self.ctx, self.pl
        every, unknown = self.owner._content_blocks(pl)
        later = np.flatnonzero(kept.deferred >= 0)
        if len(later):
            kept.reason[later] = self.owner.explain(
                self.mpos[kept.pos[later]], kept.deferred[later]
            )
        content = ctx.item_content
        item = kept.item
        ids_of = ctx.item_id_values[item].tolist()
        titles = content[c.TITLE][item].tolist()
        urls = content[c.URL][item].tolist()
        images = content[c.IMAGE_URL][item].tolist()
        cats = content[c.CATEGORY][item].tolist()
        prices = [None if p != p else p for p in content[c.PRICE][item].tolist()]
        scores = kept.score.tolist()
        reasons = kept.reason.tolist()
        bounds = np.searchsorted(kept.pos, np.arange(len(self.ids) + 1)).tolist()
        out = []
        for j, cid in enumerate(self.ids):
            start, end = bounds[j], bounds[j + 1]
            items = [
                RecommendedItem(
                    rank=i - start + 1,
                    item_id=str(ids_of[i]),
                    score=float(scores[i]),
                    reason=str(reasons[i]),
                    title=titles[i],
                    url=urls[i],
                    image_url=images[i],
                    price=prices[i],
                    category=cats[i],
                )
                for i in range(start, end)
            ]
            ok = bool(eligible[j])
            code = self.ccode[j]
            block = (every[code] if code >= 0 else unknown) if ok else None
            reason = why[j]
            out.append(
                RecipientResult(
                    customer_id=cid,
                    placement=pl.name,
                    eligible=ok,
                    reason=None if reason is None else str(reason),
                    content_block=None if block is None else str(block),
                    items=items,
                )
            )
        return out


__all__ = ["MIN_TABLE_WIDTH", "OnlineNextBestOffers"]
