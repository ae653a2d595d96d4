"""Training entry points for notebooks, the CLI and MLproject: :func:`train_model`.

``TRAINERS`` maps a model name to a function ``(settings, data, force) -> TrainingResult``;
other model families add their entry here (e.g. ``"repurchase_timing"``). ``"all"`` first
trains the binary scores (the entries named in :data:`training.scoring_job.TASKS`:
conversion intent and churn) together with :func:`train_binary_models`, which opens,
validates and samples the shop once for both (25-40 s at 1M customers), then runs every
other entry in insertion order. A model whose needs the data do not meet (no sessions,
one placeholder item, too short for its horizon: :mod:`training.requirements`) is
skipped by ``"all"`` and named with the reason in :attr:`TrainedModels.skipped`; asked
for alone, it raises :class:`training.requirements.UnsupportedDataError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from klantbeeld.settings import Settings, get_settings
from training.result import TrainingResult

if TYPE_CHECKING:
    from training.backtest import BacktestConfig
    from training.scoring_job import PreparedShop

log = logging.getLogger(__name__)

Trainer = Callable[[Settings, Path, bool], TrainingResult]


class TrainedModels(dict[str, TrainingResult]):
    """Results by model name, plus ``skipped``: model name to the reason it was not trained.

    Parameters
    ----------
    results : mapping of str to TrainingResult
    skipped : mapping of str to str, optional
        The message of each model's :class:`training.requirements.UnsupportedDataError`.
    """

    def __init__(
        self,
        results: Mapping[str, TrainingResult] | None = None,
        skipped: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(results or {})
        self.skipped: dict[str, str] = dict(skipped or {})


def _train_conversion_intent(settings: Settings, data: Path, force: bool) -> TrainingResult:
    from training.scoring_job import CONVERSION_INTENT, run_scoring_job

    return run_scoring_job(CONVERSION_INTENT, settings, data, force=force)


def _train_churn(settings: Settings, data: Path, force: bool) -> TrainingResult:
    from training.scoring_job import CHURN, run_scoring_job

    return run_scoring_job(CHURN, settings, data, force=force)


def train_binary_models(
    settings: Settings,
    data: Path,
    names: Sequence[str] = ("conversion_intent", "churn"),
    *,
    force: bool = False,
    config: BacktestConfig | None = None,
    prepared: PreparedShop | None = None,
    skip_unsupported: bool = False,
) -> TrainedModels:
    """Train several binary scores on one prepared shop, one MLflow run each.

    The shop is opened, validated, its time range found and its customer sample drawn
    once (:func:`training.scoring_job.prepare_shop`) and shared by every job; each job is
    otherwise what training that model alone runs (same plan, sample, metrics, registry).

    Parameters
    ----------
    settings : Settings
        Horizons, seed and the MLflow store.
    data : Path
        Shop folder or DuckDB file.
    names : sequence of str
        Keys of :data:`training.scoring_job.TASKS`, trained in this order.
    force : bool
        Promote every new version to champion regardless of metrics.
    config : BacktestConfig, optional
        Default ``BacktestConfig()`` (as a single-model job).
    prepared : PreparedShop, optional
        A shop already prepared with ``config`` (e.g. timed by a benchmark); default:
        prepared here.
    skip_unsupported : bool
        Leave out (and name in ``skipped``) a model the data do not support instead of
        raising :class:`training.requirements.UnsupportedDataError`.

    Returns
    -------
    TrainedModels
        In the order of ``names``.
    """
    from training.backtest import BacktestConfig
    from training.scoring_job import TASKS, prepare_shop, run_scoring_job

    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"names must be among {list(TASKS)}, got {unknown}")
    config = config or BacktestConfig()
    if prepared is None and names:
        prepared = prepare_shop(data, settings, config)
    from training.requirements import UnsupportedDataError

    results = TrainedModels()
    for n in names:
        try:
            results[n] = run_scoring_job(
                TASKS[n], settings, data, config=config, force=force, prepared=prepared
            )
        except UnsupportedDataError as exc:
            if not skip_unsupported:
                raise
            log.info("skipped: %s", exc)
            results.skipped[n] = str(exc)
    return results


def _train_repurchase_timing(settings: Settings, data: Path, force: bool) -> TrainingResult:
    from training.repurchase_job import train_repurchase_timing

    return train_repurchase_timing(settings, data, force_promote=force)


def _train_recommender(settings: Settings, data: Path, force: bool) -> TrainingResult:
    from training.recommender_job import train_recommender

    return train_recommender(settings, data, force=force)


def _train_clv(settings: Settings, data: Path, force: bool) -> TrainingResult:
    from training.clv_job import train_clv

    return train_clv(settings, data, force=force)


TRAINERS: dict[str, Trainer] = {
    "conversion_intent": _train_conversion_intent,
    "churn": _train_churn,
    "repurchase_timing": _train_repurchase_timing,
    "recommender": _train_recommender,
    "clv": _train_clv,
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
    TrainingResult, or for ``"all"`` a :class:`TrainedModels` of model name to
    TrainingResult (in the order of :data:`TRAINERS`; conversion intent and churn are
    trained first, on one prepared shop, see :func:`train_binary_models`) whose
    ``skipped`` names each model the data do not support and why.

    Raises
    ------
    training.requirements.UnsupportedDataError
        A single ``model`` the data do not support (what is missing is in the message).
    """
    settings = settings or get_settings()
    data = Path(data) if data is not None else settings.resolved_data_dir
    if model != "all" and model not in TRAINERS:
        raise ValueError(f"model must be one of {[*TRAINERS, 'all']}, got {model!r}")
    if not data.exists():
        from klantbeeld.errors import ConfigError

        raise ConfigError(f"data {data} does not exist; run `klantbeeld demo-data` or pass --data")
    if model == "all":
        from training.requirements import UnsupportedDataError
        from training.scoring_job import TASKS

        # the binary scores share one opened and sampled shop
        binary = [n for n in TRAINERS if n in TASKS]
        done = train_binary_models(settings, data, binary, force=force, skip_unsupported=True)
        for n, fn in TRAINERS.items():
            if n in binary:
                continue
            try:
                done[n] = fn(settings, data, force)
            except UnsupportedDataError as exc:
                log.info("skipped: %s", exc)
                done.skipped[n] = str(exc)
        ordered = {n: done[n] for n in TRAINERS if n in done}
        return TrainedModels(ordered, {n: done.skipped[n] for n in TRAINERS if n in done.skipped})
    return TRAINERS[model](settings, data, force)
