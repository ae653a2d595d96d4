"""NextBestOffers: the fitted candidate sources + ranker that serving asks for offers.

``candidates(customer_ids)`` returns one row per (customer, item) proposed by any source
with columns ``customer_id, item_id, score, source, reason`` (plus the ranker's feature
columns); ``rank(candidates)`` adds the final ``score`` and sorts per customer. The batch
path ``candidate_block(customer_ids)`` gives the same ranked candidates as fixed-width 2-D
arrays (one row per customer, :class:`~models.recommender.block.CandidateBlock`) without a
long frame. Business rules (consent, recently sent, durables, max per category) are
applied by ``serving/``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal, Self, cast

import numpy as np
import pandas as pd
from scipy import sparse

from features import contract as c
from klantbeeld.atomic import atomic_directory
from models.recommender.als import ALSRecommender
from models.recommender.base import Recommender, load_array, save_array
from models.recommender.block import (
    DEFERRED,
    FIXED_REASONS,
    SOURCE_REASON,
    CandidateBlock,
    reason_table,
)
from models.recommender.buy_again import BuyAgainRecommender, due_probability_matrix
from models.recommender.ease import EASERecommender
from models.recommender.interactions import (
    IdMap,
    interaction_matrix,
    item_cycle_days,
    purchase_age_matrix,
    recency_matrix,
)
from models.recommender.item_knn import ItemKNNRecommender
from models.recommender.nbo_block import block_for_positions
from models.recommender.popularity import CategoryPopularityRecommender, PopularityRecommender
from models.recommender.ranker import CandidateRanker, Candidates, gather, top_k
from models.recommender.recent import RecentlyViewedRecommender

log = logging.getLogger(__name__)

ALL_SOURCES = (
    "als",
    "item_knn",
    "ease",
    "buy_again",
    "recently_viewed",
    "popular",
    "popular_in_segment",
)
DEFAULT_SOURCES = tuple(s for s in ALL_SOURCES if s != "ease")
_HISTORY_MATRIX = {"recently_viewed": "recency_", "buy_again": "purchase_age_"}
_MATRICES = ("history_", "recency_", "purchase_age_")
_ITEM_ARRAYS = ("categories_", "price_", "repurchasable_", "item_log_pop_")
EXTRA_FEATURES = (
    "n_sources",
    "item_log_popularity",
    "item_price",
    "category_affinity",
    "recency",
    "history_strength",
    "user_log_activity",
)


class NextBestOffers:
    """Candidate sources fitted on the events before ``as_of``, plus the final ranker.

    Parameters
    ----------
    event_weights : mapping event type -> weight
        Interaction-matrix weights (settings ``recommender_event_weights``).
    sources : sequence of str
        Candidate sources to use, from ``ALL_SOURCES``.
    n_per_source : int, default 50
    als_factors, als_iterations, als_regularization, als_alpha, confidence_scaling :
        ALS settings.
    knn_k : int
        Neighbours per item.
    ease_l2 : float
        EASE regularisation (source ``ease``, off by default: n_items^2 memory).
    exclude_history : bool
        Never propose items already in the history (catalogues without repeat use).
    recent_half_life_days : float
        Half-life of the recency score, days.
    random_state : int or None
    als_candidate_items : int or None
        ALS proposes among this many most popular items only (None: all).

    Attributes
    ----------
    ids_ : IdMap
        Customers and items; row ``len(ids_.users)`` is an empty row used for unknown
        customers (they get popularity, never an error).
    models_ : dict[str, Recommender]
    ranker_ : CandidateRanker
    as_of_ : str (ISO timestamp)
    path_ : Path
        Only on a loaded model: the folder it was read from.
    """

    path_: Path

    def __init__(
        self,
        event_weights: Mapping[str, float],
        sources: Sequence[str] = DEFAULT_SOURCES,
        n_per_source: int = 50,
        als_factors: int = 64,
        als_iterations: int = 15,
        als_regularization: float = 0.05,
        als_alpha: float = 10.0,
        confidence_scaling: Literal["linear", "log"] = "log",
        knn_k: int = 50,
        recent_half_life_days: float = 14.0,
        ease_l2: float = 500.0,
        exclude_history: bool = False,
        random_state: int | None = None,
        als_candidate_items: int | None = None,
    ):
        self.event_weights = dict(event_weights)
        self.sources = list(sources)
        self.n_per_source = n_per_source
        self.als_factors = als_factors
        self.als_iterations = als_iterations
        self.als_regularization = als_regularization
        self.als_alpha = als_alpha
        self.confidence_scaling = confidence_scaling
        self.knn_k = knn_k
        self.recent_half_life_days = recent_half_life_days
        self.ease_l2 = ease_l2
        self.exclude_history = exclude_history
        self.random_state = random_state
        self.als_candidate_items = als_candidate_items

    @classmethod
    def from_settings(cls, settings, **overrides) -> NextBestOffers:
        """Build from :class:`klantbeeld.settings.Settings` (``recommender_*`` fields)."""
        kw = dict(
            event_weights=settings.recommender_event_weights,
            als_factors=settings.recommender_als_factors,
            als_iterations=settings.recommender_als_iterations,
            als_regularization=settings.recommender_als_regularization,
            als_alpha=settings.recommender_als_alpha,
            confidence_scaling=settings.recommender_confidence_scaling,
            knn_k=settings.recommender_knn_k,
            recent_half_life_days=settings.recommender_recent_half_life_days,
            random_state=settings.seed,
            als_candidate_items=settings.recommender_als_candidate_items,
        )
        kw.update(overrides)
        return cls(**kw)

    def get_params(self) -> dict:
        """Constructor arguments as a JSON-serialisable dict."""
        import inspect

        keys = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {k: getattr(self, k) for k in keys}

    # -- fitting ----------------------------------------------------------------------
    def fit(
        self, events: pd.DataFrame, ids: IdMap, items: pd.DataFrame | None, as_of: datetime
    ) -> Self:
        """Fit every source on the events strictly before ``as_of``; return ``self``.

        Parameters
        ----------
        events : pd.DataFrame
            ``customer_id, item_id, event_type, ts`` (later events are ignored).
        ids : IdMap
            Customers and items to index.
        items : pd.DataFrame, optional
            Item table (``item_id, category`` and optionally ``price, repurchasable``).
        as_of : datetime
            Naive UTC cut-off.
        """
        unknown = set(self.sources) - set(ALL_SOURCES)
        if unknown:
            raise ValueError(f"sources must be among {ALL_SOURCES}, got {sorted(unknown)}")
        past = events[events[c.TS] < pd.Timestamp(as_of)]
        self.ids_ = ids
        self.as_of_ = pd.Timestamp(as_of).isoformat()
        pad = IdMap(ids.users.append(pd.Index(["\x00unknown"])), ids.items)  # empty last row
        self.history_ = interaction_matrix(past, pad, self.event_weights)
        self.recency_ = recency_matrix(past, pad, as_of, self.recent_half_life_days)
        self.purchase_age_ = purchase_age_matrix(past, pad, as_of)
        self._item_meta(items, ids)
        self.item_log_pop_ = np.log1p(np.asarray((self.history_ > 0).sum(axis=0)).ravel()).astype(
            np.float32
        )
        seed = self.random_state
        h = self.history_
        self.models_: dict[str, Recommender] = {}
        for name in self.sources:
            m: Recommender
            if name == "als":
                m = ALSRecommender(
                    factors=self.als_factors,
                    iterations=self.als_iterations,
                    regularization=self.als_regularization,
                    alpha=self.als_alpha,
                    scaling=self.confidence_scaling,
                    random_state=seed,
                    candidate_items=self.als_candidate_items,
                ).fit(h)
            elif name == "ease":
                m = EASERecommender(l2=self.ease_l2).fit(h)
            elif name == "item_knn":
                m = ItemKNNRecommender(K=self.knn_k).fit(h)
            elif name == "buy_again":
                m = BuyAgainRecommender().fit(
                    h, item_cycle_days=item_cycle_days(past, ids), repurchasable=self.repurchasable_
                )
            elif name == "recently_viewed":
                m = RecentlyViewedRecommender().fit(h)
            elif name == "popular":
                m = PopularityRecommender().fit(h)
            else:
                m = CategoryPopularityRecommender(self.categories_).fit(h)
            self.models_[name] = m
        self.ranker_ = CandidateRanker("blend")
        return self

    def _item_meta(self, items: pd.DataFrame | None, ids: IdMap) -> None:
        n = len(ids.items)
        meta = (
            items.set_index(c.ITEM_ID).reindex(ids.items)
            if items is not None
            else pd.DataFrame(index=ids.items)
        )
        cat = meta[c.CATEGORY] if c.CATEGORY in meta else pd.Series("", index=ids.items)
        codes, names = pd.factorize(cat.fillna("").astype(str), sort=True)
        self.categories_ = codes.astype(np.int32)
        self.category_names_ = [str(x) for x in names]
        price = meta[c.PRICE] if c.PRICE in meta else pd.Series(np.nan, index=ids.items)
        self.price_ = price.to_numpy(dtype=np.float32, na_value=np.nan)
        rep = meta[c.REPURCHASABLE] if c.REPURCHASABLE in meta else pd.Series(True, index=ids.items)
        self.repurchasable_ = rep.fillna(False).to_numpy(dtype=bool).reshape(n)

    def refresh(self, events: pd.DataFrame, as_of: datetime) -> NextBestOffers:
        """A copy that reads customer histories from ``events`` before ``as_of``.

        The fitted sources and the ranker are kept; only the matrices read at recommend
        time (interactions, recency, purchase age) are rebuilt, so recently viewed, buy
        again, item-kNN and popular-in-segment see the newest events, and customers new
        since the fit are appended (ALS folds them in). Use it to serve a model trained
        on an earlier period (e.g. the evaluated one) with today's histories.

        Parameters
        ----------
        events : pd.DataFrame
            ``customer_id, item_id, event_type, ts``.
        as_of : datetime
            Naive UTC instant the recency and purchase ages are counted from.

        Returns
        -------
        NextBestOffers
        """
        past = events[events[c.TS] < pd.Timestamp(as_of)]
        known = self.ids_.users
        seen = pd.Index(pd.unique(past[c.CUSTOMER_ID].astype(str).to_numpy()))
        new_users = seen[~seen.isin(known)].sort_values()
        out = copy.copy(self)
        out.ids_ = IdMap(known.append(new_users), self.ids_.items)
        pad = IdMap(out.ids_.users.append(pd.Index(["\x00unknown"])), self.ids_.items)
        out.as_of_ = pd.Timestamp(as_of).isoformat()
        out.history_ = interaction_matrix(past, pad, self.event_weights)
        out.recency_ = recency_matrix(past, pad, as_of, self.recent_half_life_days)
        out.purchase_age_ = purchase_age_matrix(past, pad, as_of)
        log.info("histories refreshed to %s: %d new customers", out.as_of_, len(new_users))
        return out

    def with_repurchase_scores(self, pairs: pd.DataFrame, weeks: int = 2) -> NextBestOffers:
        """A copy whose buy-again source ranks by the repurchase-timing model.

        Parameters
        ----------
        pairs : pd.DataFrame
            Item-level repurchase scores at this object's ``as_of_``
            (``training.repurchase_scores.repurchase_table(...).pairs``: ``customer_id, item_id,
            p_week_1..``). Pairs it does not cover keep the cycle-ratio score.
        weeks : int, default 2
            "Due" = probability of a repurchase within this many weeks.
        """
        if "buy_again" not in self.models_:
            return self
        due = due_probability_matrix(pairs, self.ids_, weeks, n_rows=self.history_.shape[0])
        out = copy.copy(self)
        out.models_ = dict(self.models_)
        model = cast(BuyAgainRecommender, self.models_["buy_again"])
        out.models_["buy_again"] = model.with_due_probability(due)
        log.info("buy again ranked by repurchase probability for %d pairs", due.nnz)
        return out

    # -- candidates and features ------------------------------------------------------------
    def _inputs(self) -> dict[str, tuple[Recommender, sparse.csr_matrix]]:
        return {
            name: (m, getattr(self, _HISTORY_MATRIX.get(name, "history_")))
            for name, m in self.models_.items()
        }

    def positions(self, customer_ids: Sequence[str] | np.ndarray | pd.Index) -> np.ndarray:
        """Row positions of ``customer_ids``; unknown customers map to the empty row."""
        pos = self.ids_.user_pos(np.asarray(customer_ids, dtype=object))
        pos[pos < 0] = len(self.ids_.users)
        return pos

    def candidate_pairs(
        self, user_pos: np.ndarray, n_per_source: int | None = None
    ) -> tuple[Candidates, np.ndarray, list[str]]:
        """Merged candidates of every source for row positions ``user_pos`` and features.

        Returns
        -------
        cands : Candidates
        features : ndarray of float32, shape (n_pairs, n_features)
        names : list of str
        """
        n = n_per_source or self.n_per_source
        exclude = self.history_ if self.exclude_history else None
        cands = gather(self._inputs(), np.asarray(user_pos, dtype=np.int64), n, exclude)
        return cands, *self.features(cands)

    def features(self, cands: Candidates) -> tuple[np.ndarray, list[str]]:
        """Ranker features of every candidate pair (see ``EXTRA_FEATURES``)."""
        u, i = cands.users, cands.items
        uniq, inv = np.unique(u, return_inverse=True)
        cat_pop = CategoryPopularityRecommender(self.categories_).fit(
            sparse.csr_matrix((1, len(self.categories_)), dtype=np.float32)
        )
        aff = cat_pop.category_affinity(self.history_[uniq])
        activity = np.log1p(self.history_.getnnz(axis=1)[u]).astype(np.float32)
        cols = [cands.scores, cands.ranks]
        extra = np.column_stack(
            [
                (~np.isnan(cands.scores)).sum(axis=1),
                self.item_log_pop_[i],
                self.price_[i],
                aff[inv, self.categories_[i]],
                np.asarray(self.recency_[u, i]).ravel(),
                np.asarray(self.history_[u, i]).ravel(),
                activity,
            ]
        ).astype(np.float32)
        names = [f"{s}_score" for s in cands.sources] + [f"{s}_rank" for s in cands.sources]
        return np.hstack(cols + [extra]).astype(np.float32), names + list(EXTRA_FEATURES)

    # -- ranking ----------------------------------------------------------------------
    def fit_ranker(
        self, user_pos: np.ndarray, truth: sparse.csr_matrix, ranker: CandidateRanker
    ) -> CandidateRanker:
        """Train ``ranker`` on this object's candidates against ``truth`` (a later period).

        ``truth`` has the rows of ``ids_`` (non-zero = the customer interacted with the
        item in the label period). Returns the fitted ranker (not installed).
        """
        cands, x, names = self.candidate_pairs(user_pos)
        labels = np.asarray(truth[cands.users, cands.items]).ravel() > 0
        return ranker.fit(x, labels.astype(np.int32), cands.users, names)

    def recommend_positions(
        self, user_pos: np.ndarray, k: int = 10, ranker: CandidateRanker | None = None
    ) -> np.ndarray:
        """Top-``k`` item positions per row position (for evaluation), shape (n, k)."""
        cands, x, _ = self.candidate_pairs(user_pos)
        score = (ranker or self.ranker_).score(cands, x)
        ids, _ = top_k(cands.users, cands.items, score, np.asarray(user_pos), k)
        return ids

    def candidates(
        self,
        customer_ids: Sequence[str],
        n_per_source: int = 50,
        *,
        with_features: bool | None = None,
    ) -> pd.DataFrame:
        """Candidate offers for ``customer_ids`` (unknown ids get popular items).

        Parameters
        ----------
        customer_ids : sequence of str
            Customers, in output order (repeats allowed).
        n_per_source : int
            Candidates asked from each source per customer.
        with_features : bool, optional
            Add the ranker's feature columns; default only when the ranker needs them
            (LambdaRank), so the blend path stays light.

        Returns
        -------
        pd.DataFrame
            ``customer_id, item_id, score`` (blend score, higher is better), ``source``
            (the source that ranked the item best), ``reason`` (``for_you``,
            ``similar_to:<item_id>``, ``bought_before``, ``viewed``,
            ``popular_in:<segment>``), then (see ``with_features``) one column per ranker
            feature. Rows are grouped by customer in input order, items by position.
        """
        customer_ids = list(customer_ids)
        pos = self.positions(customer_ids)
        uniq = np.unique(pos)
        n = n_per_source or self.n_per_source
        exclude = self.history_ if self.exclude_history else None
        cands = gather(self._inputs(), uniq, n, exclude)
        if with_features is None:
            with_features = self.ranker_.method == "lambdarank"
        # rows of each requested customer: the slice of its position in the sorted pairs
        lo = np.searchsorted(cands.users, pos, side="left")
        hi = np.searchsorted(cands.users, pos, side="right")
        lens = hi - lo
        take = np.repeat(lo - (np.cumsum(lens) - lens), lens) + np.arange(lens.sum())
        sub = Candidates(
            cands.users[take],
            cands.items[take],
            cands.scores[take],
            cands.ranks[take],
            cands.sources,
        )
        primary = np.argmin(sub.ranks, axis=1)
        src = np.asarray(sub.sources, dtype=object)[primary]
        out = pd.DataFrame(
            {
                c.CUSTOMER_ID: np.repeat(np.asarray(customer_ids, dtype=object), lens),
                c.ITEM_ID: self.ids_.items.to_numpy()[sub.items],
                "score": self.ranker_.blend(sub),
                "source": src,
                "reason": self.reason_labels()[
                    self._reason_codes(sub.users, sub.items, primary, sub.sources)
                ],
            }
        )
        if with_features:
            x, names = self.features(sub)
            out = pd.concat([out, pd.DataFrame(x, columns=names)], axis=1)
        return out

    def reason_labels(self) -> np.ndarray:
        """Reason texts by code (see :func:`models.recommender.block.reason_table`)."""
        table = getattr(self, "_reason_labels", None)
        if table is None or len(table) != 4 + len(self.category_names_) + len(self.ids_.items):
            table = reason_table(self.category_names_, self.ids_.items)
            self._reason_labels = table
        return table

    def _reason_codes(
        self,
        users: np.ndarray,
        items: np.ndarray,
        primary: np.ndarray,
        sources: Sequence[str],
        defer: bool = False,
    ) -> np.ndarray:
        """Reason code of each (user position, item position) pair from its primary source.

        ``primary`` indexes ``sources``. ``item_knn`` pairs are explained by the history
        item that contributes most (``similar_to:<item>``, ``for_you`` when none; with
        ``defer`` they get :data:`DEFERRED`, see :meth:`_explain_codes`);
        ``popular_in_segment`` pairs by the user's top category.
        """
        users = np.asarray(users, dtype=np.int64)
        code = np.zeros(len(users), dtype=np.int32)
        for s, name in enumerate(sources):
            sel = primary == s
            if not sel.any():
                continue
            if name in SOURCE_REASON:
                code[sel] = SOURCE_REASON[name]
            elif name == "popular_in_segment":
                m = cast(CategoryPopularityRecommender, self.models_["popular_in_segment"])
                uniq, inv = np.unique(users[sel], return_inverse=True)
                top = m.top_category(self.history_[uniq])[inv]
                code[sel] = np.where(top < 0, SOURCE_REASON["popular"], len(FIXED_REASONS) + top)
            elif name == "item_knn":
                code[sel] = DEFERRED if defer else self._explain_codes(users[sel], items[sel])
        return code

    def _explain_codes(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``similar_to:<item>`` codes of item-kNN pairs (``for_you`` where none explains).

        Only the pairs' history rows are handed to the explainer (a few rows per request,
        not the whole matrix)."""
        knn_model = cast(ItemKNNRecommender, self.models_["item_knn"])
        uniq, inv = np.unique(np.asarray(users, dtype=np.int64), return_inverse=True)
        j = knn_model.explain(inv, self.history_[uniq], np.asarray(items))
        n_cat = len(self.category_names_)
        return np.where(j >= 0, len(FIXED_REASONS) + n_cat + j, 0).astype(np.int32)

    def candidate_block(
        self,
        customer_ids: Sequence[str] | np.ndarray | pd.Index,
        n_per_source: int = 50,
        *,
        sources: Sequence[str] | None = None,
    ) -> CandidateBlock:
        """Ranked candidates of ``customer_ids`` as 2-D arrays (the batch path).

        Same candidates, scores, order, sources and reasons as
        ``rank(candidates(customer_ids, n_per_source))`` restricted to rows whose
        ``source`` is in ``sources``, without building a long frame: every source's
        top-``n`` lists are merged per customer row (:func:`merge_lists`), blended (or
        re-ranked by LambdaRank) and sorted within each row.

        Parameters
        ----------
        customer_ids : sequence of str
            Customers, one row each in this order (repeats allowed; unknown ids get
            popular items).
        n_per_source : int
            Candidates asked from each source per customer.
        sources : sequence of str, optional
            Keep only candidates whose best-ranking source is one of these (the
            placement's ``candidate_sources``); default all.

        Returns
        -------
        CandidateBlock
        """
        ids = np.asarray(customer_ids, dtype=object)
        return block_for_positions(self, ids, self.positions(ids), n_per_source, sources)

    def rank(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """Final ``score`` (ranker, else blend) per row, sorted per customer, best first.

        Customers keep their first-seen order; within a customer rows go by descending
        score, ties by item position (= item id order).
        """
        out = candidates
        names = getattr(self.ranker_, "feature_names_", None)
        if self.ranker_.method == "lambdarank" and names:
            if not set(names) <= set(candidates.columns):
                raise ValueError(
                    "candidates must carry the ranker features; "
                    "call candidates(..., with_features=True)"
                )
            out = candidates.assign(
                score=self.ranker_.model_.predict(candidates[names].to_numpy(np.float32))
            )
        cust, _ = pd.factorize(out[c.CUSTOMER_ID])
        item = self.ids_.items.get_indexer(pd.Index(out[c.ITEM_ID]))
        order = np.lexsort((item, -out["score"].to_numpy(), cust))
        return out.take(order).reset_index(drop=True)

    # -- persistence ------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write to folder ``path`` atomically: JSON params, ``.npy`` arrays, sources."""
        path = Path(path)
        with atomic_directory(path) as tmp:
            meta = {
                "params": self.get_params(),
                "as_of": self.as_of_,
                "category_names": self.category_names_,
                "ranker": json.loads(self.ranker_.to_json()),
            }
            (tmp / "params.json").write_text(json.dumps(meta))
            np.save(tmp / "users.npy", self.ids_.users.to_numpy(dtype=str), allow_pickle=False)
            np.save(tmp / "items.npy", self.ids_.items.to_numpy(dtype=str), allow_pickle=False)
            for name in _MATRICES + _ITEM_ARRAYS:
                save_array(tmp, name, getattr(self, name))
            for name, m in self.models_.items():
                m.save(tmp / "sources" / name)
        return path

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> NextBestOffers:
        """Read an object written by :meth:`save` (dense factor arrays memory-mapped)."""
        path = Path(path)
        meta = json.loads((path / "params.json").read_text())
        obj = cls(**meta["params"])
        obj.as_of_ = meta["as_of"]
        obj.category_names_ = meta["category_names"]
        obj.ranker_ = CandidateRanker.from_json(json.dumps(meta["ranker"]))
        users = np.load(path / "users.npy", allow_pickle=False).astype(object)
        items = np.load(path / "items.npy", allow_pickle=False).astype(object)
        obj.ids_ = IdMap(pd.Index(users), pd.Index(items))
        for name in _MATRICES + _ITEM_ARRAYS:
            setattr(obj, name, load_array(path, name, mmap=False))
        obj.models_ = {
            name: Recommender.load(path / "sources" / name, mmap=mmap) for name in obj.sources
        }
        obj.path_ = path  # serving caches its candidate tables here (nbo_table)
        return obj
