"""The LambdaRank re-ranker's early stopping (models.recommender.ranker.CandidateRanker)."""

from __future__ import annotations

import numpy as np

from models.recommender.ranker import CandidateRanker


def candidate_table(n_users: int, per_user: int, seed: int):
    """Users with ``per_user`` candidates each; the one bought has the largest feature 0
    plus noise, the other two features are noise."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    x = rng.normal(size=(users.size, 3)).astype(np.float32)
    signal = (x[:, 0] + 0.5 * rng.normal(size=users.size)).reshape(n_users, per_user)
    labels = np.zeros((n_users, per_user), dtype=np.int32)
    labels[np.arange(n_users), signal.argmax(axis=1)] = 1
    return x, labels.ravel(), users


def test_early_stopping_keeps_fewer_trees_and_refits_on_all_users() -> None:
    x, y, users = candidate_table(600, 20, seed=1)
    names = ["signal", "noise_a", "noise_b"]
    stopped = CandidateRanker("lambdarank", n_estimators=300, random_state=0).fit(
        x, y, users, names
    )
    full = CandidateRanker(
        "lambdarank", n_estimators=300, random_state=0, early_stopping_rounds=None
    ).fit(x, y, users, names)
    assert full.best_iteration_ == 300 == full.model_.booster_.num_trees()
    # a one-feature signal needs few rounds; the kept trees are what is served
    assert 1 <= stopped.best_iteration_ < 150
    assert stopped.model_.booster_.num_trees() == stopped.best_iteration_
    # the refit saw every user: its first tree's root holds all 12,000 rows
    root = stopped.model_.booster_.dump_model()["tree_info"][0]["tree_structure"]
    assert root["internal_count"] == len(y)
    # and it still ranks by the signal on new users
    xt, yt, ut = candidate_table(300, 20, seed=2)
    top = stopped.model_.predict(xt).reshape(300, 20).argmax(axis=1)
    assert (yt.reshape(300, 20)[np.arange(300), top] == 1).mean() > 0.5


def test_early_stopping_is_seeded_and_survives_json() -> None:
    x, y, users = candidate_table(400, 15, seed=3)
    names = ["signal", "noise_a", "noise_b"]
    a = CandidateRanker("lambdarank", n_estimators=200, random_state=7).fit(x, y, users, names)
    b = CandidateRanker("lambdarank", n_estimators=200, random_state=7).fit(x, y, users, names)
    assert a.model_.booster_.model_to_string() == b.model_.booster_.model_to_string()
    again = CandidateRanker.from_json(a.to_json())
    assert again.early_stopping_rounds == 20 and again.stop_share == 0.2
    np.testing.assert_array_equal(again.model_.predict(x), a.model_.predict(x))


def test_too_few_users_to_hold_out_trains_every_round() -> None:
    # 100 users x 0.2 = 20 held out, below the 50 needed: no early stopping
    x, y, users = candidate_table(100, 10, seed=4)
    r = CandidateRanker("lambdarank", n_estimators=40, random_state=0).fit(
        x, y, users, ["a", "b", "c"]
    )
    assert r.best_iteration_ == 40
