"""Combine candidate sources into one ranking: a blending rule, then a LambdaRank re-ranker."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from models.recommender.base import Recommender

log = logging.getLogger(__name__)

ABSENT_RANK_PAD = 1.0  # absent sources get rank n_per_source + this
_SMALL_TABLE_ROWS = 200_000  # LightGBM trains single-threaded below this many rows
_MIN_STOP_USERS = 50  # fewer held-out users than this: no early stopping


def _group_sizes(sorted_users: np.ndarray) -> np.ndarray:
    """Rows per user of a user-sorted array (LightGBM's ``group``)."""
    return np.unique(sorted_users, return_counts=True)[1]


@dataclass
class Candidates:
    """Unique (user, item) pairs proposed by at least one source.

    Attributes
    ----------
    users, items : ndarray of int64, shape (n_pairs,)
        Row and column positions, sorted by user then item.
    scores : ndarray of float32, shape (n_pairs, n_sources)
        Each source's score, NaN where the source did not propose the pair.
    ranks : ndarray of float32, shape (n_pairs, n_sources)
        1-based rank within the source's list, ``n_per_source + 1`` where absent.
    sources : list of str
    """

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.users)


def gather(
    sources: Mapping[str, tuple[Recommender, sparse.csr_matrix]],
    user_ids: np.ndarray,
    n_per_source: int,
    exclude: sparse.csr_matrix | None = None,
) -> Candidates:
    """Run every source for ``user_ids`` and merge their top-``n_per_source`` lists.

    Parameters
    ----------
    sources : mapping name -> (fitted recommender, the matrix it reads at recommend time)
    user_ids : ndarray of int
    n_per_source : int
    exclude : csr_matrix, optional
        Items never to propose (same rows as the source matrices).
    """
    names = list(sources)
    n_items = next(iter(sources.values()))[0].n_items_
    keys, src, sc, rk = [], [], [], []
    for s, name in enumerate(names):
        model, mat = sources[name]
        ids, scores = model.recommend(user_ids, mat, n=n_per_source, exclude=exclude)
        ok = ids >= 0
        u = np.broadcast_to(user_ids[:, None], ids.shape)[ok]
        keys.append(u.astype(np.int64) * n_items + ids[ok])
        src.append(np.full(ok.sum(), s, dtype=np.int32))
        sc.append(scores[ok])
        rk.append(np.broadcast_to(np.arange(1, n_per_source + 1), ids.shape)[ok])
    key = np.concatenate(keys)
    uniq, inv = np.unique(key, return_inverse=True)
    scores = np.full((len(uniq), len(names)), np.nan, dtype=np.float32)
    ranks = np.full((len(uniq), len(names)), n_per_source + ABSENT_RANK_PAD, dtype=np.float32)
    s_all = np.concatenate(src)
    scores[inv, s_all] = np.concatenate(sc)
    ranks[inv, s_all] = np.concatenate(rk)
    return Candidates(uniq // n_items, uniq % n_items, scores, ranks, names)


def top_k(users: np.ndarray, items: np.ndarray, score: np.ndarray, user_ids: np.ndarray, k: int):
    """Best ``k`` items per user from scored pairs, as an array aligned with ``user_ids``.

    Returns
    -------
    ids : ndarray of int32, shape (len(user_ids), k), padded with -1
    scores : ndarray of float32, same shape, padded with -inf
    """
    order = np.lexsort((items, -score, users))
    u, i, s = users[order], items[order], score[order]
    start = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    pos = np.arange(len(u)) - np.repeat(start, np.diff(np.r_[start, len(u)]))
    keep = pos < k
    row_of = {int(x): r for r, x in enumerate(user_ids)}
    rows = np.fromiter((row_of.get(int(x), -1) for x in u[keep]), dtype=np.int64, count=keep.sum())
    ids = np.full((len(user_ids), k), -1, dtype=np.int32)
    vals = np.full((len(user_ids), k), -np.inf, dtype=np.float32)
    ok = rows >= 0
    ids[rows[ok], pos[keep][ok]] = i[keep][ok]
    vals[rows[ok], pos[keep][ok]] = s[keep][ok]
    return ids, vals


class CandidateRanker:
    """Final score of a candidate pair: blending rule or LightGBM LambdaRank.

    The blending rule is weighted reciprocal-rank fusion: ``sum_s w_s / (k0 + rank_s)``
    over the sources that proposed the pair (weights default to 1). The re-ranker is a
    ``LGBMRanker(objective="lambdarank")`` on the pair features (source scores and
    ranks, item popularity, price, category affinity, recency, ...); it must be trained
    on a period later than the one the candidate sources were fitted on.

    Parameters
    ----------
    method : {"blend", "lambdarank"}
    source_weights : mapping source -> weight, optional
    k0 : float, default 10.0
    n_estimators, learning_rate, num_leaves, min_child_samples : LightGBM settings
        (``n_estimators`` is the most rounds early stopping may keep).
    random_state : int or None
    early_stopping_rounds : int or None, default 20
        Hold out ``stop_share`` of the training users (seeded), stop when their NDCG@10
        has not improved for this many rounds, then refit that many trees on all users.
        Without it, ``n_estimators`` trees are trained. Fewer trees also make serving
        cheaper: every candidate of every recipient goes through each tree.
    stop_share : float, default 0.2
        Share of training users held out for early stopping.

    Attributes
    ----------
    best_iteration_ : int
        Trees kept (LambdaRank only).
    """

    def __init__(
        self,
        method: str = "blend",
        source_weights: Mapping[str, float] | None = None,
        k0: float = 10.0,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        random_state: int | None = None,
        early_stopping_rounds: int | None = 20,
        stop_share: float = 0.2,
    ):
        self.method = method
        self.label: str | None = None  # set by the job when a single source is kept
        self.model_: Any
        self.source_weights = dict(source_weights) if source_weights else None
        self.k0 = k0
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state
        self.early_stopping_rounds = early_stopping_rounds
        self.stop_share = stop_share

    def blend(self, cands: Candidates) -> np.ndarray:
        """Weighted reciprocal-rank fusion score of every pair, shape (n_pairs,)."""
        w = np.array([(self.source_weights or {}).get(s, 1.0) for s in cands.sources])
        present = ~np.isnan(cands.scores)
        return ((present * w) / (self.k0 + cands.ranks)).sum(axis=1).astype(np.float32)

    def blend_ranks(
        self, ranks: np.ndarray, sources: Sequence[str], absent_rank: float
    ) -> np.ndarray:
        """:meth:`blend` from ranks alone: ``ranks[..., s]`` is source ``s``'s rank.

        Parameters
        ----------
        ranks : ndarray of float32, shape (..., n_sources)
            ``absent_rank`` where the source did not propose the pair.
        sources : sequence of str
        absent_rank : float

        Returns
        -------
        ndarray of float32, shape ``ranks.shape[:-1]``
        """
        w = np.array([(self.source_weights or {}).get(s, 1.0) for s in sources])
        present = ranks != np.float32(absent_rank)
        return ((present * w) / (self.k0 + ranks)).sum(axis=-1).astype(np.float32)

    def fit(
        self, features: np.ndarray, labels: np.ndarray, users: np.ndarray, names: Sequence[str]
    ):
        """Train the LambdaRank model (method ``lambdarank``); return ``self``.

        Parameters
        ----------
        features : ndarray (n_pairs, n_features), rows grouped by user (sorted)
        labels : ndarray of int (n_pairs,), 1 = the user interacted in the label period
        users : ndarray (n_pairs,), the group (user) of each row, sorted
        names : feature names
        """
        self.feature_names_ = list(names)
        if self.method == "blend":
            return self
        if self.method != "lambdarank":
            raise ValueError(f"method must be 'blend' or 'lambdarank', got {self.method!r}")
        import lightgbm as lgb

        # groups without a positive give no gradient: drop them
        _, inv = np.unique(users, return_inverse=True)
        pos_per_user = np.bincount(inv, weights=labels)
        keep = pos_per_user[inv] > 0
        if keep.sum() == 0:
            raise ValueError("labels must contain at least one positive candidate")
        x, y, groups = features[keep], labels[keep].astype(int), users[keep]
        rounds = self.n_estimators
        group_ids = np.unique(groups)
        n_stop = int(len(group_ids) * self.stop_share)
        if self.early_stopping_rounds and n_stop >= _MIN_STOP_USERS:
            seed = 0 if self.random_state is None else self.random_state
            held = np.isin(groups, np.random.default_rng(seed).choice(group_ids, n_stop, False))
            fit_set = lgb.Dataset(x[~held], y[~held], group=_group_sizes(groups[~held]))
            stop_set = lgb.Dataset(
                x[held], y[held], group=_group_sizes(groups[held]), reference=fit_set
            )
            probe = lgb.train(
                self._train_params(int((~held).sum())),
                fit_set,
                num_boost_round=rounds,
                valid_sets=[stop_set],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
            rounds = int(probe.best_iteration or rounds)
        booster = lgb.train(
            self._train_params(len(y)),
            lgb.Dataset(x, y, group=_group_sizes(groups)),
            num_boost_round=rounds,
        )
        self.model_ = _BoosterModel(booster)
        self.best_iteration_ = rounds
        log.info("LambdaRank re-ranker: %d trees on %d candidate rows", rounds, len(y))
        return self

    def _train_params(self, n_rows: int) -> dict[str, Any]:
        """LightGBM parameters of the LambdaRank fit (seeded, deterministic)."""
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": 0 if self.random_state is None else self.random_state,
            # OpenMP threads busy-wait on a shared 2-core machine: one thread for small tables
            "num_threads": 1 if n_rows < _SMALL_TABLE_ROWS else 2,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
            "lambdarank_truncation_level": 20,
        }

    def score(self, cands: Candidates, features: np.ndarray) -> np.ndarray:
        """Final score per pair (higher is better)."""
        if self.method == "blend":
            return self.blend(cands)
        return np.asarray(self.model_.predict(features), dtype=np.float32)

    # -- persistence (plain JSON: params + LightGBM text model) ----------------------
    def to_json(self) -> str:
        """Serialise parameters and, if trained, the LightGBM model text."""
        params = {
            k: getattr(self, k)
            for k in (
                "method",
                "source_weights",
                "k0",
                "n_estimators",
                "learning_rate",
                "num_leaves",
                "min_child_samples",
                "random_state",
                "early_stopping_rounds",
                "stop_share",
            )
        }
        out = {"params": params, "feature_names": getattr(self, "feature_names_", None)}
        if hasattr(self, "model_"):
            out["booster"] = self.model_.booster_.model_to_string()
        return json.dumps(out)

    @classmethod
    def from_json(cls, text: str) -> CandidateRanker:
        """Inverse of :meth:`to_json`."""
        import lightgbm as lgb

        data = json.loads(text)
        obj = cls(**data["params"])
        if data.get("feature_names") is not None:
            obj.feature_names_ = data["feature_names"]
        if "booster" in data:
            booster = lgb.Booster(model_str=data["booster"])
            obj.model_ = _BoosterModel(booster)
        return obj


class _BoosterModel:
    """Minimal predict wrapper around a loaded ``lightgbm.Booster``."""

    def __init__(self, booster):
        self.booster_ = booster

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.booster_.predict(x)
