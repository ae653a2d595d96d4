"""The result every training job returns (one MLflow run, one registered version)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainingResult:
    """What one training job did.

    Attributes
    ----------
    model : str
        Model family, e.g. ``"churn"``.
    run_id, experiment_id : str
        The MLflow run and its experiment (``klantbeeld-<model>``).
    version : int
        Registered version of ``klantbeeld-<model>`` (alias ``challenger``).
    promoted : bool
        Whether that version is now ``champion``.
    promotion_reason : str
        Why (see :mod:`training.registry`).
    metrics : dict[str, float]
        Everything logged as run metrics.
    test_period : str
        ``"<test cutoff>/<test end>"`` (ISO dates).
    tracking_uri : str
        MLflow store the run went to.
    seconds : float
        Wall time of the job.
    """

    model: str
    run_id: str
    experiment_id: str
    version: int
    promoted: bool
    promotion_reason: str
    metrics: dict[str, float] = field(repr=False)
    test_period: str
    tracking_uri: str
    seconds: float

    @property
    def model_uri(self) -> str:
        """``models:/klantbeeld-<model>/<version>``."""
        return f"models:/klantbeeld-{self.model}/{self.version}"
