"""Ranked candidates of ``NextBestOffers`` rows as a :class:`CandidateBlock` (the batch path).

:func:`block_for_positions` is the work behind ``NextBestOffers.candidate_block``: every
source's top-``n`` lists of the asked model rows are merged per row
(:func:`~models.recommender.block.merge_lists`), blended (or re-ranked by LambdaRank),
restricted to the asked sources and sorted within each row. It takes model row positions
(unknown customers: the empty last row), so the serving tables of
:mod:`models.recommender.nbo_table` can ask for every row of the model, the empty one
included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from models.recommender.block import CandidateBlock, merge_lists, sort_rows
from models.recommender.ranker import ABSENT_RANK_PAD, Candidates

if TYPE_CHECKING:
    from models.recommender.next_best import NextBestOffers


def block_for_positions(
    model: NextBestOffers,
    customer_ids: np.ndarray,
    pos: np.ndarray,
    n_per_source: int | None = None,
    sources: Sequence[str] | None = None,
) -> CandidateBlock:
    """Ranked candidates of the model rows ``pos`` (see ``NextBestOffers.candidate_block``).

    Parameters
    ----------
    model : NextBestOffers
        Fitted (or loaded) model.
    customer_ids : ndarray of object, shape (m,)
        Ids the rows stand for (copied into the block).
    pos : ndarray of int64, shape (m,)
        Model row positions (``model.positions(customer_ids)``); repeats allowed.
    n_per_source : int, optional
        Candidates asked from each source per row; default ``model.n_per_source``.
    sources : sequence of str, optional
        Keep only candidates whose best-ranking source is one of these; default all.

    Returns
    -------
    CandidateBlock
        One row per entry of ``pos``, best first; item-kNN reasons deferred.
    """
    pos = np.asarray(pos, dtype=np.int64)
    uniq, inv = np.unique(pos, return_inverse=True)
    n = n_per_source or model.n_per_source
    exclude = model.history_ if model.exclude_history else None
    names = list(model.models_)
    lists = [
        source.recommend(uniq, mat, n=n, exclude=exclude)
        for source, mat in model._inputs().values()
    ]
    ranker = model.ranker_
    lambdarank = ranker.method == "lambdarank" and bool(getattr(ranker, "feature_names_", None))
    merged = merge_lists(
        [a for a, _ in lists],
        [b for _, b in lists],
        absent_rank=n + ABSENT_RANK_PAD,
        with_scores=lambdarank,
    )
    items = merged.items
    valid = items >= 0
    primary = np.argmin(merged.ranks, axis=2).astype(np.int8)
    if lambdarank:
        r, k = np.nonzero(valid)
        if merged.scores is None:
            raise RuntimeError("merge_lists returned no scores for the re-ranker")
        cands = Candidates(uniq[r], items[r, k], merged.scores[r, k], merged.ranks[r, k], names)
        x, _ = model.features(cands)
        score = np.full(items.shape, -np.inf)
        score[r, k] = ranker.model_.predict(x.astype(np.float32))
    else:
        score = ranker.blend_ranks(merged.ranks, names, n + ABSENT_RANK_PAD)
        score = np.where(valid, score.astype(np.float64), -np.inf)
    if sources is not None:
        allowed = np.isin(np.asarray(names, dtype=object), list(sources))
        valid &= allowed[primary]
        score[~valid] = -np.inf
    r, k = np.nonzero(valid)
    reason = np.full(items.shape, -1, dtype=np.int32)
    reason[r, k] = model._reason_codes(uniq[r], items[r, k], primary[r, k], names, defer=True)
    items = np.where(valid, items, -1)
    primary = np.where(valid, primary, -1).astype(np.int8)
    score, items, primary, reason = sort_rows(score, items, primary, reason)
    return CandidateBlock(
        customer_ids=np.asarray(customer_ids, dtype=object),
        items=items[inv].astype(np.int32),
        score=score[inv],
        source=primary[inv],
        reason=reason[inv],
        item_index=model.ids_.items,
        sources=tuple(names),
        reason_labels=model.reason_labels(),
        positions=pos,
        explain=model._explain_codes,
    )


__all__ = ["block_for_positions"]
