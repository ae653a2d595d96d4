"""Contract tests every recommender runs, plus known-answer tests per source."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from klantbeeld.errors import NotTrainedError
from models.recommender import (
    ALSRecommender,
    BuyAgainRecommender,
    CategoryPopularityRecommender,
    EASERecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    RecentlyViewedRecommender,
    Recommender,
)
from models.recommender.base import top_n

N_USERS, N_ITEMS = 40, 20


def checkerboard() -> tuple[sparse.csr_matrix, np.ndarray]:
    """Users of parity p like the items of parity p, each missing exactly one of them.

    Returns the matrix and, per user, the missing item (the known right answer).
    """
    rows, cols = [], []
    missing = np.empty(N_USERS, dtype=np.int32)
    for u in range(N_USERS):
        group = [i for i in range(N_ITEMS) if i % 2 == u % 2]
        missing[u] = group[(u // 2) % len(group)]
        for i in group:
            if i != missing[u]:
                rows.append(u)
                cols.append(i)
    m = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS)
    )
    return m, missing


def assert_same_ranking(
    ids_a: np.ndarray, scores_a: np.ndarray, ids_b: np.ndarray, scores_b: np.ndarray
) -> None:
    """Two top-n lists rank alike: equal ids where the score is untied, and the same ids
    within each run of tied scores (a batch and a single product may order float ties
    differently). A tie run cut off by the end of the list may hold different ids."""
    tol = 1e-5 * max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(scores_a), scores_a, 0)))))
    start = 0
    n = len(ids_a)
    while start < n:
        end = start + 1
        while end < n and abs(scores_a[end] - scores_a[start]) <= tol:
            end += 1
        if end == n and end - start > 1:
            break  # a tie run reaching the cut: which tied items made the list may differ
        assert set(ids_a[start:end]) == set(ids_b[start:end]), (ids_a, ids_b)
        start = end


class RecommenderContract:
    """Shared contract: every recommender must pass these on the checkerboard."""

    def make(self, seed: int = 0) -> Recommender:
        raise NotImplementedError

    def fitted(self, seed: int = 0) -> tuple[Recommender, sparse.csr_matrix]:
        x, _ = checkerboard()
        return self.make(seed).fit(x), x

    def test_shapes_and_dtypes(self):
        model, x = self.fitted()
        ids, scores = model.recommend(np.arange(N_USERS), x, n=7)
        assert ids.shape == (N_USERS, 7) and ids.dtype == np.int32
        assert scores.shape == (N_USERS, 7) and scores.dtype == np.float32
        valid = ids >= 0
        # best first: scores never increase along a row
        s = np.where(valid, scores, -np.inf)
        assert (np.diff(s, axis=1) <= 0).all()
        assert (scores[~valid] == -np.inf).all()

    def test_batch_equals_single(self):
        model, x = self.fitted()
        users = np.array([3, 0, 17, 39, 8])
        ids, scores = model.recommend(users, x, n=5)
        for k, u in enumerate(users):
            one_ids, one_scores = model.recommend(np.array([u]), x, n=5)
            np.testing.assert_allclose(one_scores[0], scores[k], rtol=1e-5)
            assert_same_ranking(one_ids[0], one_scores[0], ids[k], scores[k])

    def test_excluded_items_never_appear(self):
        model, x = self.fitted()
        rng = np.random.default_rng(0)
        exclude = sparse.random(N_USERS, N_ITEMS, density=0.3, format="csr", random_state=rng)
        exclude = exclude + x
        ids, _ = model.recommend(np.arange(N_USERS), x, n=N_ITEMS, exclude=exclude)
        free, _ = model.recommend(np.arange(N_USERS), x, n=N_ITEMS)
        for u in range(N_USERS):
            banned = set(exclude[u].indices)
            got = set(ids[u][ids[u] >= 0])
            assert not (got & banned)
            # everything not banned and proposed by the source is still available
            assert got == set(free[u][free[u] >= 0]) - banned

    def test_save_load_identical(self, tmp_path):
        model, x = self.fitted()
        ids, scores = model.recommend(np.arange(N_USERS), x, n=6)
        model.save(tmp_path / "m")
        for mmap in (False, True):
            back = Recommender.load(tmp_path / "m", mmap=mmap)
            assert type(back) is type(model)
            b_ids, b_scores = back.recommend(np.arange(N_USERS), x, n=6)
            np.testing.assert_array_equal(b_ids, ids)
            np.testing.assert_array_equal(b_scores, scores)

    def test_same_seed_same_model(self):
        a, x = self.fitted(seed=7)
        b, _ = self.fitted(seed=7)
        ia, sa = a.recommend(np.arange(N_USERS), x, n=5)
        ib, sb = b.recommend(np.arange(N_USERS), x, n=5)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(sa, sb)

    def test_errors_name_the_argument(self):
        model, x = self.fitted()
        with pytest.raises(ValueError, match="user_items must have a row for every user"):
            model.recommend(np.array([N_USERS + 5]), x, n=3)
        with pytest.raises(ValueError, match="user_items must have 20 columns"):
            model.recommend(np.array([0]), x[:, :5], n=3)
        with pytest.raises(ValueError, match="exclude must have"):
            model.recommend(np.array([0]), x, n=3, exclude=x[:, :3])
        with pytest.raises(ValueError, match="user_ids must be a 1-d array of integers"):
            model.recommend(np.array([0.5]), x, n=3)
        with pytest.raises(ValueError, match="n must be a positive integer"):
            model.recommend(np.array([0]), x, n=0)
        with pytest.raises(NotTrainedError):
            self.make().recommend(np.array([0]), x, n=3)


class CheckerboardAnswer:
    """Collaborative sources: with the history excluded, the missing item comes first."""

    def test_missing_item_ranked_first(self):
        model, x = self.fitted()
        _, missing = checkerboard()
        ids, _ = model.recommend(np.arange(N_USERS), x, n=1, exclude=x)
        np.testing.assert_array_equal(ids[:, 0], missing)

    def test_unseen_user_gets_own_group(self):
        # a user beyond the fitted rows with a history of odd items gets odd items
        model, x = self.fitted()
        new = sparse.csr_matrix(
            (np.ones(3, dtype=np.float32), ([0, 0, 0], [1, 3, 5])), shape=(1, N_ITEMS)
        )
        hist = sparse.vstack([x, new]).tocsr()
        ids, _ = model.recommend(np.array([N_USERS]), hist, n=4, exclude=hist)
        assert all(i % 2 == 1 for i in ids[0])


class TestALS(RecommenderContract, CheckerboardAnswer):
    def make(self, seed=0):
        return ALSRecommender(factors=2, regularization=0.1, iterations=15, random_state=seed)

    def test_fold_in_matches_implicit_recalculate_user(self):
        model, x = self.fitted()
        got = model.fold_in(x[[2, 5]])
        # a user whose history equals a trained user's ends close to that user's factors
        cos = (got * model.user_factors_[[2, 5]]).sum(1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(model.user_factors_[[2, 5]], axis=1)
        )
        assert (cos > 0.99).all()

    def test_confidence_scaling_is_a_setting(self):
        x, _ = checkerboard()
        a = ALSRecommender(factors=8, scaling="linear", random_state=0).fit(x)
        b = ALSRecommender(factors=8, scaling="log", random_state=0).fit(x)
        assert not np.allclose(a.item_factors_, b.item_factors_)
        with pytest.raises(ValueError, match="scaling must be"):
            ALSRecommender(scaling="sqrt").fit(x)

    def test_fold_in_works_on_memory_mapped_factors(self, tmp_path):
        model, x = self.fitted()
        model.save(tmp_path / "m")
        back = Recommender.load(tmp_path / "m", mmap=True)
        new = sparse.csr_matrix(
            (np.ones(3, dtype=np.float32), ([0, 0, 0], [1, 3, 5])), shape=(1, N_ITEMS)
        )
        hist = sparse.vstack([x, new]).tocsr()
        want = model.recommend(np.array([N_USERS]), hist, n=4)
        got = back.recommend(np.array([N_USERS]), hist, n=4)
        np.testing.assert_array_equal(got[0], want[0])


class TestItemKNN(RecommenderContract, CheckerboardAnswer):
    def make(self, seed=0):
        return ItemKNNRecommender(similarity="cosine", K=20)

    def test_explain_names_a_history_item_of_the_same_group(self):
        model, x = self.fitted()
        _, missing = checkerboard()
        src = model.explain(np.arange(4), x, missing[:4])
        for u in range(4):
            assert src[u] in set(x[u].indices) and src[u] % 2 == u % 2

    def test_explain_equals_the_per_pair_definition(self):
        rng = np.random.default_rng(2)
        x = sparse.random(50, 80, density=0.08, format="csr", random_state=rng, dtype=np.float32)
        model = ItemKNNRecommender(K=15).fit(x)
        users = rng.integers(0, 50, 400)
        items = rng.integers(-1, 80, 400)
        got = model.explain(users, x, items)
        sim = model.similarity_.toarray()
        for k, (u, i) in enumerate(zip(users, items, strict=True)):
            contrib = x[u].toarray().ravel() * (sim[:, i] if i >= 0 else 0.0)
            want = int(np.argmax(contrib)) if i >= 0 and contrib.max() > 0 else -1
            assert got[k] == want, (k, u, i)
        assert (got >= 0).sum() > 100  # most pairs have an explaining history item


class TestEASE(RecommenderContract, CheckerboardAnswer):
    def make(self, seed=0):
        return EASERecommender(l2=1.0)

    def test_weights_have_zero_diagonal_and_match_closed_form(self):
        model, x = self.fitted()
        assert np.all(np.diag(model.weights_) == 0)
        xd = x.toarray().astype(np.float64)
        p = np.linalg.inv(xd.T @ xd + 1.0 * np.eye(N_ITEMS))
        b = np.eye(N_ITEMS) - p / np.diag(p)
        np.testing.assert_allclose(model.weights_, b, atol=1e-5)


class TestPopularity(RecommenderContract):
    def make(self, seed=0):
        return PopularityRecommender()

    def test_counts_users(self):
        x = sparse.csr_matrix(np.array([[1, 0, 5], [1, 0, 0], [2, 1, 0]], dtype=np.float32))
        model = PopularityRecommender().fit(x)
        np.testing.assert_array_equal(model.popularity_, [3, 1, 1])
        ids, scores = model.recommend(np.array([0]), x, n=3)
        # ties broken by the lower item position
        np.testing.assert_array_equal(ids[0], [0, 1, 2])
        weighted = PopularityRecommender(weighted=True).fit(x)
        np.testing.assert_array_equal(weighted.recommend(np.array([0]), x, n=3)[0][0], [2, 0, 1])


class TestCategoryPopularity(RecommenderContract):
    def make(self, seed=0):
        return CategoryPopularityRecommender(item_categories=np.arange(N_ITEMS) % 2)

    def test_follows_the_users_category(self):
        model, x = self.fitted()
        ids, _ = model.recommend(np.arange(N_USERS), x, n=10)
        assert ((ids % 2) == (np.arange(N_USERS) % 2)[:, None]).all()
        np.testing.assert_array_equal(model.top_category(x[:4]), [0, 1, 0, 1])

    def test_no_history_gets_overall_popularity(self):
        model, x = self.fitted()
        empty = sparse.csr_matrix((1, N_ITEMS), dtype=np.float32)
        ids, _ = model.recommend(np.array([0]), empty, n=3)
        pop_ids, _ = PopularityRecommender().fit(x).recommend(np.array([0]), empty, n=3)
        np.testing.assert_array_equal(ids, pop_ids)


class TestRecentlyViewed(RecommenderContract):
    def make(self, seed=0):
        return RecentlyViewedRecommender()

    def test_newest_first_and_only_own_items(self):
        rec = sparse.csr_matrix(np.array([[0.0, 0.9, 0.0, 0.25, 0.5]], dtype=np.float32))
        model = RecentlyViewedRecommender().fit(rec)
        ids, scores = model.recommend(np.array([0]), rec, n=4)
        np.testing.assert_array_equal(ids[0], [1, 4, 3, -1])
        np.testing.assert_allclose(scores[0, :3], [0.9, 0.5, 0.25])


class TestBuyAgain(RecommenderContract):
    def make(self, seed=0):
        return BuyAgainRecommender(default_cycle_days=1.0)

    def test_due_items_first_and_non_repurchasable_never(self):
        # ages (1 + days since last purchase): item 0 at 31 (cycle 30, due), item 1 at 11
        # (cycle 10, due), item 2 at 100 (cycle 25: 4x overdue), item 3 not repurchasable
        age = sparse.csr_matrix(np.array([[31.0, 11.0, 100.0, 30.0, 0.0]], dtype=np.float32))
        model = BuyAgainRecommender().fit(
            age,
            item_cycle_days=np.array([31.0, 22.0, 25.0, 30.0, np.nan]),
            repurchasable=np.array([True, True, True, False, True]),
        )
        ids, scores = model.recommend(np.array([0]), age, n=4)
        np.testing.assert_array_equal(ids[0], [0, 1, 2, -1])
        np.testing.assert_allclose(scores[0, :3], [1.0, 0.5, 0.25])
        assert model.cycle_days_[4] == 30.0


def test_top_n_breaks_ties_by_position_and_skips_minus_inf():
    s = np.array([[1.0, 3.0, 3.0, -np.inf, 3.0], [np.nan, -np.inf, 2.0, 2.0, 0.5]])
    ids, vals = top_n(s, 2)
    np.testing.assert_array_equal(ids, [[1, 2], [2, 3]])
    ids, vals = top_n(s, 5)
    np.testing.assert_array_equal(ids, [[1, 2, 4, 0, -1], [2, 3, 4, -1, -1]])
    assert vals[1, 3] == -np.inf


@pytest.mark.parametrize(
    "make",
    [
        lambda: PopularityRecommender(),
        lambda: CategoryPopularityRecommender(item_categories=np.arange(300) % 7),
        lambda: RecentlyViewedRecommender(),
        lambda: BuyAgainRecommender(),
        lambda: ItemKNNRecommender(K=10),
    ],
)
def test_sparse_shortlist_equals_dense_scoring(make):
    # random histories with heavy exclusion: the shortlist path gives the dense top-n exactly
    rng = np.random.default_rng(5)
    x = sparse.random(60, 300, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    x.data = np.ceil(x.data * 4).astype(np.float32)
    keep = np.ones((60, 1), dtype=np.float32)
    keep[3] = 0.0  # a user without history
    x = sparse.csr_matrix(x.multiply(keep))
    x.eliminate_zeros()
    model = make().fit(x)
    users = np.arange(60)
    exclude = x + sparse.random(60, 300, density=0.1, format="csr", random_state=rng)
    ids, scores = model.recommend(users, x, n=15, exclude=exclude)
    dense = model._score_block(users, x)
    dense[exclude.toarray() != 0] = -np.inf
    want_ids, want_scores = top_n(dense, 15)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def test_top_n_wide_rows_equal_the_partition_path():
    from models.recommender import base

    rng = np.random.default_rng(4)
    s = np.round(rng.standard_normal((30, 3000)), 1).astype(np.float32)  # many ties
    s[0] = -np.inf
    s[1, 5:] = -np.inf  # fewer finite entries than n
    s[2, ::7] = np.nan
    assert s.shape[1] >= base._WIDE_BLOCK * 4 * 10  # the wide path is taken
    ids, vals = top_n(s, 10)
    filled = np.where(np.isnan(s), -np.inf, s)
    for r in range(30):
        finite = np.flatnonzero(np.isfinite(filled[r]))
        want = finite[np.lexsort((finite, -filled[r, finite]))][:10]
        np.testing.assert_array_equal(ids[r, : len(want)], want)
        assert (ids[r, len(want) :] == -1).all()
    np.testing.assert_array_equal(ids[0], -1)


def test_als_candidate_pool_limits_proposals_to_popular_items(tmp_path):
    x, _ = checkerboard()
    x = x.multiply(sparse.csr_matrix(np.arange(1, N_ITEMS + 1) % 5 != 0)).tocsr()  # 4 unused
    full = ALSRecommender(factors=4, random_state=0).fit(x)
    pooled = ALSRecommender(factors=4, random_state=0, candidate_items=12).fit(x)
    np.testing.assert_array_equal(full.user_factors_, pooled.user_factors_)
    assert len(pooled.pool_) == 12 and set(pooled.pool_) <= set(np.flatnonzero(x.getnnz(0)))
    ids, scores = pooled.recommend(np.arange(N_USERS), x, n=6, exclude=x)
    assert set(ids[ids >= 0]) <= set(pooled.pool_)
    # the same ranking as full scoring restricted to the pool
    dense = full._score_block(np.arange(N_USERS), x)
    mask = np.full(N_ITEMS, -np.inf, dtype=np.float32)
    mask[pooled.pool_] = 0.0
    dense = dense + mask
    dense[x.toarray() != 0] = -np.inf
    np.testing.assert_array_equal(ids, top_n(dense, 6)[0])
    # a saved model from before pools existed loads as a whole-catalogue model
    full.save(tmp_path / "m")
    (tmp_path / "m" / "pool_.npy").unlink()
    old = Recommender.load(tmp_path / "m")
    assert old.pool_ is None
    np.testing.assert_array_equal(
        old.recommend(np.arange(4), x, n=3)[0], full.recommend(np.arange(4), x, n=3)[0]
    )


def test_buy_again_ranks_by_repurchase_probability_where_the_model_scored(tmp_path):
    import pandas as pd

    from models.recommender.buy_again import due_probability_matrix
    from models.recommender.interactions import IdMap

    age = sparse.csr_matrix(np.array([[31.0, 11.0, 100.0, 0.0], [5.0, 0.0, 20.0, 8.0]], np.float32))
    model = BuyAgainRecommender().fit(age, item_cycle_days=np.array([31.0, 22.0, 25.0, 8.0]))
    # cycle ratios: user 0 -> [1.0, 0.5, 0.25], user 1 -> [5/31, -, 0.8, 1.0]
    ids = IdMap(pd.Index(["a", "b"]), pd.Index(["i0", "i1", "i2", "i3"]))
    pairs = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "zz"],
            "item_id": ["i0", "i2", "i3", "i0"],
            "p_week_1": [0.05, 0.5, 0.0, 0.9],
            "p_week_2": [0.05, 0.3, 0.0, 0.0],
            "p_week_3": [0.9, 0.0, 0.0, 0.0],
        }
    )
    due = due_probability_matrix(pairs, ids, weeks=2)
    assert due.shape == (3, 4) and due.nnz == 3  # unknown customer dropped
    scored = model.with_due_probability(due)
    ids0, s0 = scored.recommend(np.array([0, 1]), age, n=3)
    # user 0: i2 (0.8 model) > i1 (0.5 cycle) > i0 (0.1 model); user 1: i2 0.8 > i0 > i3 (0.0)
    np.testing.assert_array_equal(ids0, [[2, 1, 0], [2, 0, 3]])
    np.testing.assert_allclose(s0, [[0.8, 0.5, 0.1], [0.8, 5 / 31, 0.0]], rtol=1e-6)
    # the fitted model itself is unchanged; save/load keeps the probabilities
    np.testing.assert_array_equal(model.recommend(np.array([0]), age, n=3)[0], [[0, 1, 2]])
    scored.save(tmp_path / "b")
    back = Recommender.load(tmp_path / "b")
    np.testing.assert_array_equal(back.recommend(np.array([0, 1]), age, n=3)[0], ids0)
    with pytest.raises(ValueError, match="probabilities"):
        model.with_due_probability(due * 3)


def test_params_follow_the_sklearn_contract(tmp_path) -> None:
    from sklearn.base import clone

    model = ItemKNNRecommender(K=7, similarity="cosine")
    assert model.get_params()["K"] == 7
    assert model.set_params(K=3) is model and model.K == 3
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert repr(model) == "ItemKNNRecommender(K=3, binary_history=False, similarity='cosine')"
    # params.json holds JSON values (an ndarray parameter becomes a list)
    seg = CategoryPopularityRecommender(np.array([0, 1, 1]))
    user_items = sparse.csr_matrix(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    seg.fit(user_items).save(tmp_path / "seg")
    back = Recommender.load(tmp_path / "seg")
    assert back.get_params()["item_categories"] == [0, 1, 1]
