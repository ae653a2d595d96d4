"""Contract tests every binary scorer runs (models.base.Scorer), on a tiny synthetic set
whose right answer is known: the label follows a logistic function of two features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.base import Scorer, directory_hash, top_k_names
from models.baselines import LogisticBaseline, RFMBaseline
from models.churn import ChurnModel
from models.conversion_intent import ConversionIntentModel
from training.metrics import roc_auc


def synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers whose purchase odds fall with recency and rise with orders and sessions."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(60.0, n)
    recency[rng.random(n) < 0.1] = np.nan  # never ordered
    orders = rng.poisson(3.0, n).astype(np.int64)
    sessions = rng.poisson(2.0, n).astype(np.int64)
    X = pd.DataFrame(
        {
            "recency_days": recency,
            "orders_total": orders,
            "monetary_total": orders * rng.gamma(2.0, 20.0, n),
            "sessions_30d": sessions,
            "tenure_days": rng.uniform(30, 700, n),
            "noise": rng.normal(size=n),
            "lifecycle_stage": pd.Categorical(
                rng.choice(["activation", "retention", "win_back"], n)
            ),
        }
    )
    z = -1.0 - 0.03 * np.nan_to_num(recency, nan=200.0) + 0.3 * orders + 0.5 * sessions
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int8)
    return X, y


X_TRAIN, Y_TRAIN = synthetic(4000, 1)
X_VALID, Y_VALID = synthetic(2000, 2)
X_TEST, Y_TEST = synthetic(2000, 3)


class ScorerContract:
    """Mixin: every Scorer implementation must pass these."""

    min_auc: float

    def make(self, seed: int = 7) -> Scorer:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls) -> Scorer:
        return cls().make().fit(X_TRAIN, Y_TRAIN, X_VALID, Y_VALID)

    def test_learns_the_signal(self, fitted: Scorer) -> None:
        p = fitted.predict_proba(X_TEST)
        assert p.dtype == np.float64 and p.shape == (len(X_TEST),)
        assert ((p > 0) & (p < 1)).all()
        assert roc_auc(Y_TEST, p) > self.min_auc
        assert abs(p.mean() - Y_TEST.mean()) < 0.03  # calibrated on average

    def test_batch_equals_single(self, fitted: Scorer) -> None:
        batch = fitted.predict_proba(X_TEST.iloc[:20])
        single = [fitted.predict_proba(X_TEST.iloc[[i]])[0] for i in range(20)]
        np.testing.assert_array_equal(batch, np.array(single))
        shuffled = X_TEST.iloc[:20].iloc[::-1]
        np.testing.assert_array_equal(fitted.predict_proba(shuffled), batch[::-1])

    def test_extra_and_missing_columns(self, fitted: Scorer) -> None:
        wider = X_TEST.iloc[:50].assign(customer_id=[f"c{i}" for i in range(50)])
        np.testing.assert_array_equal(
            fitted.predict_proba(wider), fitted.predict_proba(X_TEST.iloc[:50])
        )
        narrower = X_TEST.iloc[:50].drop(columns=["sessions_30d"])
        assert np.isfinite(fitted.predict_proba(narrower)).all()

    def test_save_load_round_trip(self, fitted: Scorer, tmp_path: Path) -> None:
        fitted.save(tmp_path / "m")
        again = type(fitted).load(tmp_path / "m")
        np.testing.assert_array_equal(again.predict_proba(X_TEST), fitted.predict_proba(X_TEST))
        pd.testing.assert_frame_equal(
            again.explain(X_TEST.iloc[:30]), fitted.explain(X_TEST.iloc[:30])
        )
        again.save(tmp_path / "m2")
        assert directory_hash(tmp_path / "m2") == directory_hash(tmp_path / "m")

    def test_same_seed_same_model(self, fitted: Scorer, tmp_path: Path) -> None:
        twin = self.make().fit(X_TRAIN, Y_TRAIN, X_VALID, Y_VALID)
        fitted.save(tmp_path / "a")
        twin.save(tmp_path / "b")
        assert directory_hash(tmp_path / "a") == directory_hash(tmp_path / "b")
        np.testing.assert_array_equal(twin.predict_proba(X_TEST), fitted.predict_proba(X_TEST))

    def test_explain_top3(self, fitted: Scorer) -> None:
        e = fitted.explain(X_TEST.iloc[:100], k=3)
        assert e.index.equals(X_TEST.index[:100])
        assert list(e.columns) == ["top_up", "top_down"]
        assert all(len(u) <= 3 and len(d) <= 3 for u, d in zip(e.top_up, e.top_down, strict=True))
        assert all(not set(u) & set(d) for u, d in zip(e.top_up, e.top_down, strict=True))
        names = set(fitted.feature_names_)
        assert all(set(u) <= names for u in e.top_up)

    def test_unfitted_raises(self) -> None:
        from klantbeeld.errors import NotTrainedError

        with pytest.raises(NotTrainedError, match="not fitted"):
            self.make().predict_proba(X_TEST)

    def test_one_class_labels_rejected(self) -> None:
        with pytest.raises(ValueError, match="both classes"):
            self.make().fit(X_TRAIN, np.zeros(len(X_TRAIN)), X_VALID, Y_VALID)


class TestConversionIntent(ScorerContract):
    min_auc = 0.80

    def make(self, seed: int = 7) -> Scorer:
        return ConversionIntentModel(random_state=seed, params={"min_child_samples": 20})

    def test_other_seed_other_model(self, fitted: Scorer, tmp_path: Path) -> None:
        other = self.make(seed=8).fit(X_TRAIN, Y_TRAIN, X_VALID, Y_VALID)
        fitted.save(tmp_path / "a")
        other.save(tmp_path / "b")
        assert directory_hash(tmp_path / "a") != directory_hash(tmp_path / "b")

    def test_contributions_sum_to_margin(self, fitted) -> None:
        c = fitted.contributions(X_TEST.iloc[:40])
        np.testing.assert_allclose(c.sum(axis=1), fitted.predict_raw(X_TEST.iloc[:40]), atol=1e-9)

    def test_path_contributions_sum_to_margin(self, fitted) -> None:
        c = fitted.path_contributions(X_TEST.iloc[:200])
        np.testing.assert_allclose(c.sum(axis=1), fitted.predict_raw(X_TEST.iloc[:200]), atol=1e-9)
        # the features that matter get the weight: noise carries little
        share = c.drop(columns="bias").abs().mean()
        assert share["noise"] < share["sessions_30d"] / 3

    def test_recency_explains_the_recent(self, fitted) -> None:
        recent = X_TEST.assign(recency_days=1.0, orders_total=3, sessions_30d=2).iloc[:1]
        assert fitted.explain(recent).top_up.iloc[0][0] == "recency_days"

    def test_refit_learns_from_the_validation_rows(self) -> None:
        # "noise" predicts the label only in the validation period: the refitted model
        # (training + validation rows) uses it, the early-stopped one hardly does
        X_va = X_VALID.assign(noise=np.where(Y_VALID == 1, 1.0, -1.0))
        plain = ConversionIntentModel(random_state=7, params={"min_child_samples": 20}, refit=False)
        plain.fit(X_TRAIN, Y_TRAIN, X_va, Y_VALID)
        refit = self.make().fit(X_TRAIN, Y_TRAIN, X_va, Y_VALID)
        assert refit.booster_.num_trees() == refit.best_iteration_
        share = [m.feature_importance() / m.feature_importance().sum() for m in (plain, refit)]
        assert share[0]["noise"] < 0.15 < 0.3 < share[1]["noise"]

    def test_calibration_margins_are_cross_fitted(self) -> None:
        # a validation row's margin comes from a model that never saw its label: flipping
        # the labels of half A changes the margins of half B only
        scorer = self.make()
        scorer.best_iteration_ = 30
        params = scorer.lgb_params()
        half = np.random.default_rng(scorer.random_state).permutation(len(Y_VALID)) % 2
        flipped = np.where(half == 0, 1 - Y_VALID, Y_VALID)
        X_tr = X_TRAIN.drop(columns="lifecycle_stage")
        X_va = X_VALID.drop(columns="lifecycle_stage")
        a = scorer._cross_fitted_margins(params, X_tr, Y_TRAIN, X_va, Y_VALID)
        b = scorer._cross_fitted_margins(params, X_tr, Y_TRAIN, X_va, flipped)
        np.testing.assert_array_equal(a[half == 0], b[half == 0])
        assert not np.allclose(a[half == 1], b[half == 1])


class TestChurn(ScorerContract):
    min_auc = 0.80

    def make(self, seed: int = 7) -> Scorer:
        return ChurnModel(random_state=seed, params={"min_child_samples": 20})


class TestRFM(ScorerContract):
    min_auc = 0.70

    def make(self, seed: int = 7) -> Scorer:
        return RFMBaseline()


class TestLogistic(ScorerContract):
    min_auc = 0.80

    def make(self, seed: int = 7) -> Scorer:
        return LogisticBaseline()


def test_top_k_names_by_hand() -> None:
    contrib = np.array([[0.5, -0.2, 0.0, 0.9], [-1.0, -2.0, 0.1, 0.0]])
    ups, downs = top_k_names(contrib, ["a", "b", "c", "d"], 2)
    assert ups == [["d", "a"], ["c"]]
    assert downs == [["b"], ["b", "a"]]
