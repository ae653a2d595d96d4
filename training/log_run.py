"""One MLflow run per training job: :func:`log_training_run`, the contract every job shares.

Every training job (conversion intent and churn in :mod:`training.scoring_job`, repurchase
timing, the recommender, CLV) measures its metrics first and then calls
:func:`log_training_run` once. That call

1. opens a run in experiment ``klantbeeld-<model>`` on the project's store
   (:func:`training.tracking.start_run`; never ``./mlruns`` of the working directory),
   tagged ``model`` and ``test_period`` (:func:`training.registry.format_test_period`,
   the same format for every job);
2. logs the description, params, the finite metrics, the job's own artifacts and the
   model (under :data:`training.registry.MODEL_ARTIFACT`);
3. when the champion was tested on another period, lets the job score the champion on
   this run's holdout and logs that as ``champion_<primary metric>``;
4. registers the model as ``challenger`` and moves ``champion`` to it when it beats the
   champion on the same holdout (:func:`training.registry.promote_if_better`);
5. returns a :class:`training.result.TrainingResult`.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training import registry
from training.result import TrainingResult

if TYPE_CHECKING:
    from klantbeeld.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChampionRef:
    """The current champion, handed to a job's ``score_champion`` callback.

    Attributes
    ----------
    model : str
        Model family.
    version : int
        Its registered version.
    run : mlflow.entities.Run
        The run that logged it (its params and tags).
    """

    model: str
    version: int
    run: Any

    def load(self) -> Any:
        """The champion as an MLflow pyfunc model."""
        return registry.load_version(self.model, self.version)


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics with a finite value, as floats (what a run logs; NaN means "not defined")."""
    out = {}
    for k, v in metrics.items():
        f = float(v)
        if math.isfinite(f):
            out[k] = f
    return out


def log_training_run(
    model: str,
    settings: Settings,
    *,
    test_start: datetime,
    test_end: datetime,
    params: Mapping[str, Any],
    metrics: dict[str, float],
    log_model: Callable[[str], Any],
    primary_metric: str,
    higher_is_better: bool = True,
    force: bool = False,
    register: bool = True,
    started: float | None = None,
    run_name: str | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    log_artifacts: Callable[[Path], None] | None = None,
    score_champion: Callable[[ChampionRef], float | None] | None = None,
    **result_fields: Any,
) -> TrainingResult:
    """Log one training job as one MLflow run, register it and apply the promotion rule.

    Parameters
    ----------
    model : str
        Model family; experiment and registered model ``klantbeeld-<model>``.
    settings : Settings
        The MLflow store (:func:`training.tracking.tracking_uri`).
    test_start, test_end : datetime
        The holdout: cutoff T and the end of its label window (naive UTC); tag
        ``test_period``.
    params : mapping
        Run params (values are written as strings).
    metrics : dict of str to float
        Every metric measured; the finite ones are logged. The same dict object is
        the result's ``metrics``.
    log_model : callable
        ``(name) -> Any``: logs the model into the active run under ``name``
        (e.g. :func:`models.pyfunc.log_scorer`).
    primary_metric : str
        Run metric the promotion compares, e.g. ``"test_roc_auc"``.
    higher_is_better : bool
        Direction of ``primary_metric``.
    force : bool
        Promote to ``champion`` regardless of metrics.
    register : bool
        Register the model as ``challenger`` (and apply the rule); False leaves the run
        unregistered (``version`` None).
    started : float, optional
        ``time.perf_counter()`` at the job's start; ``seconds`` counts from it (default:
        from this call).
    run_name : str, optional
        Default ``"<model>-<test start date>"``.
    description : str, optional
        Run description (``mlflow.note.content``).
    tags : mapping, optional
        Extra run tags.
    log_artifacts : callable, optional
        ``(tmp_dir) -> None``: logs the job's own artifacts (plots, tables, input
        descriptions) into the active run; ``tmp_dir`` is an empty folder removed afterwards.
    score_champion : callable, optional
        ``(ChampionRef) -> float or None``: the champion's ``primary_metric`` on this
        run's holdout, called only when a champion exists and its ``test_period`` differs;
        None (or an exception, logged as a warning) means "not comparable".
    **result_fields
        Extra :class:`TrainingResult` fields (``as_of``, ``n_train``, ``level``, ...).

    Returns
    -------
    TrainingResult
    """
    import mlflow

    from training.tracking import start_run

    t0 = time.perf_counter() if started is None else started
    period = registry.format_test_period(test_start, test_end)
    run_tags = {**dict(tags or {}), registry.TEST_PERIOD_TAG: period, "model": model}
    name = run_name or f"{model}-{test_start:%Y-%m-%d}"
    with start_run(model, settings, run_name=name, tags=run_tags) as run:
        if description:
            mlflow.set_tag("mlflow.note.content", description)
        mlflow.log_params(dict(params))
        mlflow.log_metrics(finite_metrics(metrics))
        if log_artifacts is not None:
            with tempfile.TemporaryDirectory() as tmp:
                log_artifacts(Path(tmp))
        log_model(registry.MODEL_ARTIFACT)
        if score_champion is not None:
            _compare_with_champion(model, period, primary_metric, score_champion)
        run_id, exp_id = run.info.run_id, run.info.experiment_id

    version: int | None = None
    promoted, reason = False, "not registered"
    if register:
        version = registry.register_challenger(run_id, model)
        decision = registry.promote_if_better(
            model, version, primary_metric, higher_is_better=higher_is_better, force=force
        )
        promoted, reason = decision.promoted, decision.reason
    return TrainingResult(
        model=model,
        run_id=run_id,
        experiment_id=exp_id,
        version=version,
        promoted=promoted,
        promotion_reason=reason,
        metrics=metrics,
        test_period=period,
        tracking_uri=mlflow.get_tracking_uri(),
        seconds=time.perf_counter() - t0,
        **result_fields,
    )


def _compare_with_champion(
    model: str,
    period: str,
    metric: str,
    score_champion: Callable[[ChampionRef], float | None],
) -> None:
    """On the active run, log the champion's ``metric`` on this run's test period when the
    champion was tested on another period (see :mod:`training.registry`)."""
    import mlflow

    champ = registry.champion_version(model)
    if champ is None:
        return
    champ_run = registry.version_run(model, champ)
    if champ_run.data.tags.get(registry.TEST_PERIOD_TAG) == period:
        return  # promote_if_better compares the two runs' own metrics
    try:
        value = score_champion(ChampionRef(model, champ, champ_run))
    except Exception as exc:  # a champion on another feature set cannot be compared
        log.warning("%s champion v%s could not score this test period: %s", model, champ, exc)
        return
    if value is None or not math.isfinite(value):
        return
    mlflow.log_metric(f"champion_{metric}", float(value))
    mlflow.set_tag(registry.COMPARED_VERSION_TAG, str(champ))
