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


TRAINERS: dict[str, Trainer] = {
    "conversion_intent": _train_conversion_intent,
    "churn": _train_churn,
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
