"""Churn: will this customer make no purchase in (T, T + 90 days]?

Population (ARCHITECTURE §3): customers with at least one purchase in the 365 days before
T; horizon and population window are settings (``churn_horizon_days``,
``churn_population_days``). Labels come from :func:`features.labels.churn_labels`
(1 = churned).
"""

from __future__ import annotations

from typing import Any, ClassVar

from models.lgbm import GradientBoostedScorer


class ChurnModel(GradientBoostedScorer):
    """LightGBM churn scorer; see :class:`models.lgbm.GradientBoostedScorer`."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "num_leaves": 15,
        "min_child_samples": 300,
        "learning_rate": 0.03,
        "lambda_l2": 10.0,
    }
