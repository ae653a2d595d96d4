"""Read the threshold curve the training job logged with its last backtest in MLflow."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings

CURVE_ARTIFACT = "evaluation/threshold_curve.csv"


@dataclass(frozen=True)
class BacktestCurve:
    """One backtest's threshold curve and where it came from.

    Attributes
    ----------
    model : str
    run_id : str
        MLflow run that logged it.
    test_period : str
        ``<cutoff>/<cutoff + horizon>`` of the backtest's test period.
    curve : DataFrame
        :func:`training.threshold_curve.threshold_curve`.
    """

    model: str
    run_id: str
    test_period: str
    curve: pd.DataFrame


def last_backtest_curve(model: str, settings: Settings) -> BacktestCurve:
    """The threshold curve of the most recent finished training run of ``model``.

    Parameters
    ----------
    model : str
        ``conversion_intent`` or ``churn``.
    settings : Settings
        Tracking store (``KLANTBEELD_MLFLOW_TRACKING_URI`` or ``home/mlflow.db``).

    Returns
    -------
    BacktestCurve

    Raises
    ------
    NotTrainedError
        No experiment, no finished run, or the latest run predates the curve artifact.
    """
    import mlflow

    from training.tracking import configure_mlflow, experiment_name

    configure_mlflow(settings)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment_name(model))
    if exp is None:
        raise NotTrainedError(f"no MLflow experiment for {model!r}: run `klantbeeld train {model}`")
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise NotTrainedError(
            f"no finished training run of {model!r}: run `klantbeeld train {model}`"
        )
    run = runs[0]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run.info.run_id, CURVE_ARTIFACT, tmp)
        except Exception as exc:  # mlflow raises several types for a missing artifact
            raise NotTrainedError(
                f"run {run.info.run_id} of {model!r} has no {CURVE_ARTIFACT} "
                f"(trained by an older version?): retrain with `klantbeeld train {model}`"
            ) from exc
        curve = pd.read_csv(Path(local))
    return BacktestCurve(
        model=model,
        run_id=run.info.run_id,
        test_period=run.data.tags.get("test_period", ""),
        curve=curve,
    )


__all__ = ["CURVE_ARTIFACT", "BacktestCurve", "last_backtest_curve"]
