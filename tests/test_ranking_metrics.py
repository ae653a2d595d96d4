"""Ranking metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import sparse

from training.ranking_metrics import (
    coverage,
    ndcg_at_k,
    precision_at_k,
    ranking_report,
    recall_at_k,
)

N_ITEMS = 10


def truth_of(rows: list[list[int]]) -> sparse.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sparse.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), N_ITEMS))


# user 0: relevant {1, 3}; recs 1, 2, 3, 4 -> hits at ranks 1 and 3
# user 1: relevant {5};    recs 0, 5, -1, -1 -> hit at rank 2
# user 2: relevant {};     skipped by every average
# user 3: relevant {7, 8, 9}; recs 0, 1, 2, 7 -> hit at rank 4
RECS = np.array([[1, 2, 3, 4], [0, 5, -1, -1], [1, 2, 3, 4], [0, 1, 2, 7]])
TRUTH = truth_of([[1, 3], [5], [], [7, 8, 9]])


def test_recall_by_hand():
    # k=2: 1/2, 1/1, 0/3 -> 0.5 ; k=4: 2/2, 1/1, 1/3
    assert recall_at_k(RECS, TRUTH, 2) == pytest.approx((0.5 + 1 + 0) / 3)
    assert recall_at_k(RECS, TRUTH, 4) == pytest.approx((1 + 1 + 1 / 3) / 3)


def test_precision_by_hand():
    assert precision_at_k(RECS, TRUTH, 2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert precision_at_k(RECS, TRUTH, 4) == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)


def test_ndcg_by_hand():
    l2 = math.log2
    u0 = (1 / l2(2) + 1 / l2(4)) / (1 / l2(2) + 1 / l2(3))
    u1 = (1 / l2(3)) / (1 / l2(2))
    u3 = (1 / l2(5)) / (1 / l2(2) + 1 / l2(3) + 1 / l2(4))
    assert ndcg_at_k(RECS, TRUTH, 4) == pytest.approx((u0 + u1 + u3) / 3)


def test_perfect_is_one_and_no_overlap_is_zero():
    truth = truth_of([[1, 2], [3], [4, 5, 6]])
    perfect = np.array([[1, 2, 0], [3, 0, 9], [4, 5, 6]])
    wrong = np.array([[0, 9, 8], [1, 2, -1], [7, 8, 9]])
    for metric in (recall_at_k, ndcg_at_k):
        assert metric(perfect, truth, 3) == 1.0
        assert metric(wrong, truth, 3) == 0.0
    assert precision_at_k(wrong, truth, 3) == 0.0


def test_coverage_and_report():
    assert coverage(RECS, N_ITEMS, k=2) == pytest.approx(4 / 10)  # {0,1,2,5}
    assert coverage(RECS, N_ITEMS) == pytest.approx(7 / 10)  # {0,1,2,3,4,5,7}
    rep = ranking_report(RECS, TRUTH, N_ITEMS, ks=(2, 4))
    assert rep["recall_at_4"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert rep["coverage"] == pytest.approx(7 / 10)
    assert sorted(rep) == sorted(
        ["coverage"] + [f"{m}_at_{k}" for m in ("recall", "precision", "ndcg") for k in (2, 4)]
    )


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="recs must have shape"):
        recall_at_k(RECS[:2], TRUTH, 2)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k(RECS, TRUTH, 0)
