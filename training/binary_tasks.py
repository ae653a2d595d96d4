"""What each binary customer score is: its scorer, labels, horizon and demo-shop oracle.

:data:`CONVERSION_INTENT` and :data:`CHURN` are the two :class:`BinaryTask` that
:func:`training.scoring_job.run_scoring_job` trains; :data:`TASKS` names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from features import contract as c
from klantbeeld.settings import Settings
from models.churn import ChurnModel
from models.conversion_intent import ConversionIntentModel
from models.lgbm import GradientBoostedScorer

LABEL = "label"


class OracleFn(Protocol):
    """A demo-shop oracle: ``(shop_dir, as_of, settings, *, customer_ids, events)``.

    Returns ``DataFrame[customer_id, p]``, the true probability of label 1 at ``as_of``
    for the customers created before it (only those of ``customer_ids`` when given),
    reading the purchases from ``events`` (a table with every purchase of those
    customers) instead of the shop's ``events`` folder when given.
    """

    def __call__(
        self,
        shop_dir: Path,
        as_of: datetime,
        settings: Settings,
        /,
        *,
        customer_ids: Sequence[str] | None = None,
        events: Any = None,
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class BinaryTask:
    """What one binary score is: its scorer, labels, horizon and (demo shop) oracle.

    Attributes
    ----------
    name : str
        Model family, e.g. ``"churn"``; the experiment is ``klantbeeld-<name>``.
    make_scorer : callable
        ``(seed, num_threads) -> GradientBoostedScorer`` (unfitted).
    labels : callable
        ``(shop, as_of, settings) -> DataFrame[customer_id, label]`` for the population.
    horizon_days : callable
        ``settings -> int``, the label horizon in days.
    oracle : OracleFn or None
        ``(shop_dir, as_of, settings, *, customer_ids=None, events=None) ->
        DataFrame[customer_id, p]``: the true probability of label 1 from the demo shop's
        ``truth/`` folder (only ``customer_ids`` when given; purchases read from ``events``
        when given).
    description : str
        One line for run descriptions.
    label_is_purchase : bool
        True when label 1 means a purchase in the horizon (conversion intent), False when
        it means none (churn); the form of the seasonal adjustment depends on it
        (:func:`models.seasonality.adjust`).
    """

    name: str
    make_scorer: Callable[[int, int], GradientBoostedScorer]
    labels: Callable[[Any, datetime, Settings], pd.DataFrame]
    horizon_days: Callable[[Settings], int]
    oracle: OracleFn | None
    description: str
    label_is_purchase: bool = True


def _conversion_labels(shop: Any, as_of: datetime, s: Settings) -> pd.DataFrame:
    from features.labels import conversion_labels

    return conversion_labels(shop, as_of, s.conversion_horizon_days, s.conversion_population_days)


def _churn_labels(shop: Any, as_of: datetime, s: Settings) -> pd.DataFrame:
    from features.labels import churn_labels

    return churn_labels(shop, as_of, s.churn_horizon_days, s.churn_population_days)


def _demo_oracle(function: str, column: str, horizon: Callable[[Settings], int]) -> OracleFn:
    """An :class:`OracleFn` over ``features.demo_shop.<function>`` (imported when called),
    whose probability column ``column`` becomes ``p``, at the horizon ``horizon(settings)``."""

    def oracle(
        shop_dir: Path,
        as_of: datetime,
        s: Settings,
        /,
        *,
        customer_ids: Sequence[str] | None = None,
        events: Any = None,
    ) -> pd.DataFrame:
        from features import demo_shop

        o = getattr(demo_shop, function)(
            shop_dir, as_of, horizon(s), customer_ids=customer_ids, events=events
        )
        return o.rename(columns={column: "p"})[[c.CUSTOMER_ID, "p"]]

    return oracle


CONVERSION_INTENT = BinaryTask(
    name="conversion_intent",
    make_scorer=lambda seed, threads: ConversionIntentModel(random_state=seed, num_threads=threads),
    labels=_conversion_labels,
    horizon_days=lambda s: s.conversion_horizon_days,
    oracle=_demo_oracle(
        "oracle_purchase_probability", "p_purchase", lambda s: s.conversion_horizon_days
    ),
    description="purchase in (T, T+H] for customers with a session in the window before T",
)
CHURN = BinaryTask(
    name="churn",
    make_scorer=lambda seed, threads: ChurnModel(random_state=seed, num_threads=threads),
    labels=_churn_labels,
    horizon_days=lambda s: s.churn_horizon_days,
    oracle=_demo_oracle("oracle_churn_probability", "p_churn", lambda s: s.churn_horizon_days),
    description="no purchase in (T, T+H] for customers with a purchase in the window before T",
    label_is_purchase=False,
)
TASKS: dict[str, BinaryTask] = {t.name: t for t in (CONVERSION_INTENT, CHURN)}
