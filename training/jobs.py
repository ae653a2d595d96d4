"""Training entry points for notebooks, the CLI and MLproject: :func:`train_model`.

``TRAINERS`` maps a model name to a function ``(settings, data, force) -> TrainingResult``;
other model families add their entry here (e.g. ``"repurchase_timing"``). ``"all"`` runs
every entry in insertion order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from klantbeeld.settings import Settings, get_settings
from training.result import TrainingResult

log = logging.getLogger(__name__)

Trainer = Callable[[Settings, Path, bool], TrainingResult]


def _train_conversion_intent(settings: Settings, data: Path, force: bool) -> TrainingResult:
    from training.scoring_job import CONVERSION_INTENT, run_scoring_job

    return run_scoring_job(CONVERSION_INTENT, settings, data, force=force)


def _train_churn(settings: Settings, data: Path, force: bool) -> TrainingResult:
    from training.scoring_job import CHURN, run_scoring_job

    return run_scoring_job(CHURN, settings, data, force=force)


def _as_training_result(
    model: str,
    settings: Settings,
    run_id: str,
    version: int,
    promoted: bool,
    reason: str,
    metrics: dict[str, float],
    test_period: str,
    seconds: float,
) -> TrainingResult:
    import mlflow

    from training.tracking import tracking_uri

    return TrainingResult(
        model=model,
        run_id=run_id,
        experiment_id=mlflow.get_run(run_id).info.experiment_id,
        version=version,
        promoted=promoted,
        promotion_reason=reason,
        metrics=metrics,
        test_period=test_period,
        tracking_uri=tracking_uri(settings),
        seconds=seconds,
    )


def _train_repurchase_timing(settings: Settings, data: Path, force: bool) -> TrainingResult:
    from training.repurchase_job import MODEL, train_repurchase_timing

    r = train_repurchase_timing(settings, data, force_promote=force)
    reason = "promoted to champion" if r.promoted else "kept as challenger"
    return _as_training_result(
        MODEL,
        settings,
        r.run_id,
        int(r.version or 0),
        r.promoted,
        reason,
        r.metrics,
        r.test_period,
        r.seconds,
    )


def _train_recommender(settings: Settings, data: Path, force: bool) -> TrainingResult:
    import time
    from datetime import timedelta

    from training.recommender_job import MODEL, train_recommender

    t0 = time.perf_counter()
    r = train_recommender(settings, data)
    if r.run_id is None or r.version is None:
        raise RuntimeError("recommender job did not log an MLflow run")
    decision = r.promotion
    promoted = bool(getattr(decision, "promoted", False))
    if force and not promoted:
        from training.registry import promote_if_better

        decision = promote_if_better(MODEL, r.version, "test_recall_at_10", force=True)
        promoted = True
    end = r.as_of + timedelta(days=settings.recommender_test_days)
    return _as_training_result(
        MODEL,
        settings,
        r.run_id,
        r.version,
        promoted,
        str(getattr(decision, "reason", "")),
        r.metrics,
        f"{r.as_of:%Y-%m-%d}/{end:%Y-%m-%d}",
        time.perf_counter() - t0,
    )


TRAINERS: dict[str, Trainer] = {
    "conversion_intent": _train_conversion_intent,
    "churn": _train_churn,
    "repurchase_timing": _train_repurchase_timing,
    "recommender": _train_recommender,
}


def train_model(
    model: str,
    settings: Settings | None = None,
    data: Path | None = None,
    *,
    force: bool = False,
) -> TrainingResult | dict[str, TrainingResult]:
    """Train, evaluate, log, register and maybe promote one model (or ``"all"``).

    Parameters
    ----------
    model : str
        A key of :data:`TRAINERS` (``"conversion_intent"``, ``"churn"``, ...) or ``"all"``.
    settings : Settings, optional
        Default :func:`klantbeeld.settings.get_settings`.
    data : Path, optional
        Shop folder or DuckDB file; default ``settings.resolved_data_dir`` (the demo shop).
    force : bool
        Promote the new version to champion regardless of metrics.

    Returns
    -------
    TrainingResult, or dict of model name to TrainingResult for ``"all"``.
    """
    settings = settings or get_settings()
    data = Path(data) if data is not None else settings.resolved_data_dir
    if model != "all" and model not in TRAINERS:
        raise ValueError(f"model must be one of {[*TRAINERS, 'all']}, got {model!r}")
    if not data.exists():
        from klantbeeld.errors import ConfigError

        raise ConfigError(f"data {data} does not exist; run `klantbeeld demo-data` or pass --data")
    if model == "all":
        return {name: fn(settings, data, force) for name, fn in TRAINERS.items()}
    return TRAINERS[model](settings, data, force)
