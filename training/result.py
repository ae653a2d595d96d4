"""The result every training job returns (one MLflow run, one registered version)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class TrainingResult:
    """What one training job did; every job (binary scores, repurchase timing, recommender,
    CLV) returns this type, logged by :func:`training.log_run.log_training_run`.

    Attributes
    ----------
    model : str
        Model family, e.g. ``"churn"``.
    run_id, experiment_id : str or None
        The MLflow run and its experiment (``klantbeeld-<model>``); None when the job ran
        without MLflow (the recommender's ``log_to_mlflow=False``).
    version : int or None
        Registered version of ``klantbeeld-<model>`` (alias ``challenger``); None when
        nothing was registered.
    promoted : bool
        Whether that version is now ``champion``.
    promotion_reason : str
        Why (see :mod:`training.registry`).
    metrics : dict[str, float]
        Every metric the job measured (the finite ones are logged to the run).
    test_period : str
        ``"<test cutoff>/<test end>"`` (ISO dates, :func:`training.registry.format_test_period`),
        also the run's ``test_period`` tag.
    tracking_uri : str or None
        MLflow store the run went to (None without a run).
    seconds : float
        Wall time of the job.
    as_of : datetime or None
        Test cutoff T (naive UTC); the test period starts there.
    n_train, n_test : int or None
        Rows (customers, pairs) the model was fitted on and evaluated on.
    cutoffs : dict[str, str]
        The backtest cutoffs (``BacktestPlan.as_params``), empty for a single time split.
    level : str or None
        Repurchase timing: ``"item"`` or ``"category"``.
    ranker : str or None
        Recommender: the final ranking kept on validation (``"lambdarank"``, ``"blend"``
        or ``"source:<name>"``).
    model_dir : Path or None
        Recommender: the saved :class:`models.recommender.next_best.NextBestOffers` folder.
    repurchase_model : bool
        Recommender: the served buy-again source ranks by the repurchase-timing champion.
    """

    model: str
    run_id: str | None
    experiment_id: str | None
    version: int | None
    promoted: bool
    promotion_reason: str
    metrics: dict[str, float] = field(repr=False)
    test_period: str
    tracking_uri: str | None
    seconds: float
    as_of: datetime | None = None
    n_train: int | None = None
    n_test: int | None = None
    cutoffs: dict[str, str] = field(default_factory=dict, repr=False)
    level: str | None = None
    ranker: str | None = None
    model_dir: Path | None = None
    repurchase_model: bool = False

    @property
    def model_uri(self) -> str:
        """``models:/klantbeeld-<model>/<version>``."""
        if self.version is None:
            raise ValueError(f"{self.model}: nothing was registered (no version)")
        return f"models:/klantbeeld-{self.model}/{self.version}"
