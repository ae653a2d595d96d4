"""Threshold chooser: pick a score threshold for a goal from the last backtest's curve.

Goals (:class:`Goal`):

- ``keep_conversions``: the smallest audience that kept at least this share of the test
  period's actual conversions;
- ``max_audience``: the largest audience of at most this many people;
- ``budget``: the largest audience whose cost (people x ``cost_per_person``) fits it.

The curve (:func:`training.threshold_curve.threshold_curve`) was measured on the test
period of the backtest, after the training data: choosing from it never uses training
data. Its population is everyone the model scores -- for conversion intent, every customer
with a session in the 30 days before the cutoff ("every recent visitor") -- so the spend
saved is ``1 - audience_share`` of what targeting the whole population would cost. Audience
sizes are those of the test period, or scaled to ``population`` people when given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from klantbeeld.errors import ConfigError

GoalKind = Literal["keep_conversions", "max_audience", "budget"]


@dataclass(frozen=True)
class Goal:
    """What the audience must achieve.

    Attributes
    ----------
    kind : {"keep_conversions", "max_audience", "budget"}
    value : float
        Share of conversions in (0, 1]; maximum people (>= 1); or the budget (money, > 0).
    cost_per_person : float or None
        Money per reached person; required for ``budget``.
    """

    kind: GoalKind
    value: float
    cost_per_person: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "keep_conversions" and not 0 < self.value <= 1:
            raise ConfigError(f"keep_conversions must lie in (0, 1], got {self.value}")
        if self.kind == "max_audience" and self.value < 1:
            raise ConfigError(f"max_audience must be at least 1 person, got {self.value}")
        if self.kind == "budget":
            if self.value <= 0:
                raise ConfigError(f"budget must be positive, got {self.value}")
            if self.cost_per_person is None or self.cost_per_person <= 0:
                raise ConfigError("a budget goal needs a positive cost_per_person")
        if self.kind not in ("keep_conversions", "max_audience", "budget"):
            raise ConfigError(f"unknown goal {self.kind!r}")


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and what it does on the backtest's test period.

    Attributes
    ----------
    threshold : float
        Probability; the audience is ``score >= threshold``.
    audience_share : float
        Share of the scored population (every recent visitor for conversion intent).
    audience_size : int
        People, in the test period or scaled to ``population``.
    population : int
        People the sizes refer to.
    conversions_kept : float
        Share of the test period's actual conversions inside the audience.
    expected_conversions_kept : float
        Share of the expected conversions (sum of calibrated scores).
    spend_saved : float
        ``1 - audience_share``: spend saved against targeting the whole population.
    cost : float or None
        ``audience_size * cost_per_person`` (money) when a cost is known.
    oracle_audience_share : float or None
        Audience share the true propensities need to keep as many conversions (demo shop).
    goal : dict
    """

    threshold: float
    audience_share: float
    audience_size: int
    population: int
    conversions_kept: float
    expected_conversions_kept: float
    spend_saved: float
    cost: float | None
    oracle_audience_share: float | None
    goal: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _check_curve(curve: pd.DataFrame) -> pd.DataFrame:
    need = {"threshold", "audience_size", "audience_share", "conversions_share"}
    missing = need - set(curve.columns)
    if missing or curve.empty:
        raise ConfigError(
            f"threshold curve lacks columns {sorted(missing)} or rows; retrain the model "
            "with this klantbeeld version to log evaluation/threshold_curve.csv"
        )
    return curve.sort_values("audience_size", kind="stable").reset_index(drop=True)


def oracle_share_to_keep(curve: pd.DataFrame, keep: float) -> float | None:
    """Audience share the oracle ranking needs to keep ``keep`` of the conversions.

    Parameters
    ----------
    curve : DataFrame
        With ``oracle_conversions_share`` (else None is returned).
    keep : float
        Share of conversions in (0, 1].

    Returns
    -------
    float or None
        Linear interpolation of the oracle's gain curve at ``keep``.
    """
    if "oracle_conversions_share" not in curve.columns:
        return None
    c = _check_curve(curve)
    x = [0.0, *c["audience_share"].tolist()]
    g = [0.0, *c["oracle_conversions_share"].tolist()]
    for k in range(1, len(g)):
        if g[k] >= keep - 1e-12:
            span = g[k] - g[k - 1]
            frac = 1.0 if span <= 0 else (keep - g[k - 1]) / span
            return float(x[k - 1] + frac * (x[k] - x[k - 1]))
    return 1.0


def expected_conversions_threshold(scores: np.ndarray, keep: float) -> float:
    """The threshold keeping ``keep`` of the expected conversions of scored customers.

    Scores are calibrated probabilities, so the expected conversions of a group are the
    sum of its scores; the threshold is the lowest score of the smallest top-ranked group
    whose sum reaches ``keep * sum(scores)``.

    Parameters
    ----------
    scores : ndarray of float
        Calibrated probabilities; NaN (not scored) is ignored.
    keep : float
        Share of expected conversions in (0, 1].

    Returns
    -------
    float
        The threshold (``score >= threshold``); 1.0 when nobody is scored.
    """
    s = np.sort(scores[np.isfinite(scores)])[::-1]
    if len(s) == 0 or s.sum() <= 0:
        return 1.0
    cum = np.cumsum(s)
    k = int(np.searchsorted(cum, keep * cum[-1] - 1e-12))
    return float(s[min(k, len(s) - 1)])


def choose_threshold(
    curve: pd.DataFrame, goal: Goal, population: int | None = None
) -> ThresholdChoice:
    """Pick the threshold that meets ``goal`` on the backtest's threshold curve.

    Parameters
    ----------
    curve : DataFrame
        :func:`training.threshold_curve.threshold_curve` of the last backtest.
    goal : Goal
    population : int, optional
        People scored now; audience sizes and costs are scaled to it (default: the test
        period's population).

    Returns
    -------
    ThresholdChoice

    Raises
    ------
    ConfigError
        A curve without the needed columns, or a size/budget goal below the smallest
        audience the curve offers.
    """
    c = _check_curve(curve)
    n_test = int(round(c["audience_size"].iloc[-1] / c["audience_share"].iloc[-1]))
    pop = n_test if population is None else int(population)
    if pop < 1:
        raise ConfigError(f"population must be at least 1, got {population}")
    sizes = c["audience_share"] * pop
    if goal.kind == "keep_conversions":
        ok = c["conversions_share"] >= goal.value - 1e-12
        i = int(ok.to_numpy().argmax()) if ok.any() else len(c) - 1
    else:
        cap = (
            goal.value
            if goal.kind == "max_audience"
            else goal.value / float(goal.cost_per_person or 1)
        )
        fits = (sizes <= cap + 1e-9).to_numpy()
        if not fits.any():
            raise ConfigError(
                f"goal {goal.kind}={goal.value}: even the smallest audience on the curve "
                f"({math.ceil(sizes.iloc[0])} of {pop} people) does not fit"
            )
        i = int(fits.nonzero()[0][-1])
    row = c.iloc[i]
    size = int(round(row["audience_share"] * pop))
    kept = float(row["conversions_share"])
    return ThresholdChoice(
        threshold=float(row["threshold"]),
        audience_share=float(row["audience_share"]),
        audience_size=size,
        population=pop,
        conversions_kept=kept,
        expected_conversions_kept=float(row.get("expected_conversions_share", float("nan"))),
        spend_saved=1.0 - float(row["audience_share"]),
        cost=None if goal.cost_per_person is None else size * goal.cost_per_person,
        oracle_audience_share=oracle_share_to_keep(c, kept),
        goal=asdict(goal),
    )


__all__ = [
    "Goal",
    "GoalKind",
    "ThresholdChoice",
    "choose_threshold",
    "expected_conversions_threshold",
    "oracle_share_to_keep",
]
