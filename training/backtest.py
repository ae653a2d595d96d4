"""Time-based backtest plans: which snapshot cutoffs train, validate and test a model.

For a label horizon ``H`` days and the last day with data ``E`` (exclusive end):

- the test cutoff is ``E - H`` (its label window ``(T_test, T_test + H]`` ends at ``E``);
- the validation cutoff is ``T_test - H`` (its labels end where the test period starts);
- training cutoffs are ``T_valid - H``, then every ``step_days`` further back;

so no label window of a training cutoff reaches the validation cutoff, and none of the
validation period reaches the test cutoff. Training examples from several cutoffs are
stacked. Cutoffs are midnights (UTC, naive).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from models.seasonality import Mode


@dataclass(frozen=True)
class BacktestConfig:
    """Knobs of a backtest plan.

    Attributes
    ----------
    n_train : int
        Number of stacked training cutoffs.
    step_days : int
        Days between consecutive training cutoffs.
    max_train_rows : int
        Cap on stacked training rows (a seeded sample is taken above it).
    min_history_days : int
        Earliest training cutoff is at least this many days after the first event.
    num_threads : int
        Threads of model fitting (fixed, so results do not depend on the machine; on a
        busy machine 1 beats 2 because OpenMP threads wait on each other).
    max_customers : int
        Cap on the customers a training job reads. A shop with more customers is
        trained and evaluated on a seeded sample of this many: the customers whose
        ``md5("<seed>:<customer_id>")`` (hex) are the smallest, drawn once per job so every
        cutoff sees the same customers (:func:`training.scoring_job.sample_customers`).
        At or below the cap every customer is used and nothing changes.
    pit_customers : int
        The point-in-time check (a second snapshot on the shop truncated at a training
        cutoff) runs on a nested seeded sample of this many customers when the job reads
        more; at or below it, on every customer, reusing that cutoff's snapshot.
    seasonal_adjustment : {"auto", "on", "off"}
        Seasonal adjustment of the calibrated probabilities, measured one
        ``seasonal_lag_days`` earlier (:mod:`models.seasonality`); ``auto`` applies it to
        horizons of 28 days or more when the data reaches back far enough.
    seasonal_lag_days : int
        Lag of that comparison, days (364: the same weekdays a year earlier).
    """

    n_train: int = 4
    step_days: int = 28
    max_train_rows: int = 600_000
    min_history_days: int = 28
    num_threads: int = 2
    max_customers: int = 100_000
    pit_customers: int = 20_000
    seasonal_adjustment: Mode = "auto"
    seasonal_lag_days: int = 364

    def __post_init__(self) -> None:
        if self.n_train < 1:
            raise ValueError(f"n_train must be >= 1, got {self.n_train}")
        if self.step_days < 1:
            raise ValueError(f"step_days must be >= 1, got {self.step_days}")
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.max_train_rows < 100:
            raise ValueError(f"max_train_rows must be >= 100, got {self.max_train_rows}")
        if self.max_customers < 100:
            raise ValueError(f"max_customers must be >= 100, got {self.max_customers}")
        if self.pit_customers < 100:
            raise ValueError(f"pit_customers must be >= 100, got {self.pit_customers}")
        if self.seasonal_adjustment not in ("auto", "on", "off"):
            raise ValueError(
                f"seasonal_adjustment must be auto, on or off, got {self.seasonal_adjustment!r}"
            )


@dataclass(frozen=True)
class BacktestPlan:
    """Cutoffs of one backtest (all naive UTC midnights) and the label horizon in days."""

    train: tuple[datetime, ...]
    valid: datetime
    test: datetime
    horizon_days: int

    def __post_init__(self) -> None:
        check_plan(self)

    @property
    def test_end(self) -> datetime:
        """End (inclusive) of the test label window."""
        return self.test + timedelta(days=self.horizon_days)

    @property
    def test_period(self) -> str:
        """``"<test cutoff>/<test end>"`` in ISO dates: the key for champion comparisons."""
        from training.registry import format_test_period

        return format_test_period(self.test, self.test_end)

    @property
    def cutoffs(self) -> tuple[datetime, ...]:
        """Every cutoff, oldest first."""
        return (*self.train, self.valid, self.test)

    def as_params(self) -> dict[str, str]:
        """The plan as flat MLflow params."""
        return {
            "train_cutoffs": ",".join(t.date().isoformat() for t in self.train),
            "valid_cutoff": self.valid.date().isoformat(),
            "test_cutoff": self.test.date().isoformat(),
            "horizon_days": str(self.horizon_days),
        }


def check_plan(plan: BacktestPlan) -> None:
    """Raise ``ValueError`` unless label windows of train < valid < test never overlap."""
    h = timedelta(days=plan.horizon_days)
    if plan.horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {plan.horizon_days}")
    if not plan.train:
        raise ValueError("train must hold at least one cutoff")
    if list(plan.train) != sorted(set(plan.train)):
        raise ValueError("train cutoffs must be strictly increasing")
    if plan.train[-1] + h > plan.valid:
        raise ValueError(
            f"label window of train cutoff {plan.train[-1]:%Y-%m-%d} reaches past the "
            f"validation cutoff {plan.valid:%Y-%m-%d}"
        )
    if plan.valid + h > plan.test:
        raise ValueError(
            f"label window of validation cutoff {plan.valid:%Y-%m-%d} reaches past the "
            f"test cutoff {plan.test:%Y-%m-%d}"
        )


def _midnight(t: datetime) -> datetime:
    return datetime(t.year, t.month, t.day)


def plan_backtest(
    data_end: datetime,
    horizon_days: int,
    config: BacktestConfig | None = None,
    data_start: datetime | None = None,
) -> BacktestPlan:
    """Lay out the cutoffs of a backtest ending at ``data_end``.

    Parameters
    ----------
    data_end : datetime
        Exclusive end of the data (e.g. the midnight after the last event). The test
        label window ends on it.
    horizon_days : int
        Label horizon H in days.
    config : BacktestConfig, optional
        Number and spacing of training cutoffs.
    data_start : datetime, optional
        First event; training cutoffs earlier than ``data_start + min_history_days`` are
        dropped.

    Returns
    -------
    BacktestPlan

    Raises
    ------
    ValueError
        When the data is too short for a single training cutoff.
    """
    config = config or BacktestConfig()
    h = timedelta(days=horizon_days)
    test = _midnight(data_end) - h
    valid = test - h
    last_train = valid - h
    train = [last_train - timedelta(days=config.step_days * i) for i in range(config.n_train)]
    if data_start is not None:
        earliest = data_start + timedelta(days=config.min_history_days)
        train = [t for t in train if t >= earliest]
    if not train:
        raise ValueError(
            f"data from {data_start} to {data_end} is too short for a backtest with a "
            f"{horizon_days}-day horizon (needs 3 horizons plus {config.min_history_days} days)"
        )
    return BacktestPlan(tuple(sorted(train)), valid, test, horizon_days)
