"""Conversion intent: will this customer purchase in (T, T + 7 days]?

Population (ARCHITECTURE §3): customers with any session in the 30 days before T; horizon
and population window are settings (``conversion_horizon_days``,
``conversion_population_days``). Labels come from :func:`features.labels.conversion_labels`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from models.lgbm import GradientBoostedScorer


class ConversionIntentModel(GradientBoostedScorer):
    """LightGBM conversion-intent scorer; see :class:`models.lgbm.GradientBoostedScorer`.

    Short horizons give rare, noisy positives: the defaults use fewer leaves and larger
    leaves (``min_child_samples``) than the generic scorer.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "num_leaves": 31,
        "min_child_samples": 200,
        "learning_rate": 0.05,
    }
