"""Which model versions a loaded set of artifacts serves (``klantbeeld_model_info``).

:func:`served_models` is called once per (re)load by :func:`serving.api.artifacts.
load_artifacts`; ``GET /metrics`` renders the result as the Prometheus gauge
``klantbeeld_model_info{model,version,alias} 1`` (:func:`serving.api.metrics.
render_model_info`). Because the list belongs to the artifacts, a reload that swaps in new
artifacts replaces it: a version no longer served disappears from the gauge.

Sources:

- batch scores: every ``<model>_model_version`` column of the scores file, one entry per
  distinct version (batch scoring uses each model's ``champion``, so the alias is
  ``champion``);
- the recommender: the version aliased ``champion`` of ``klantbeeld-recommender`` when the
  served model came from the registry (its download cache ``<home>/cache/recommender-v<N>``
  exists), else ``version="unregistered"``, ``alias="none"`` (the last locally trained
  model, ``<home>/models/recommender``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from klantbeeld.settings import Settings
from serving.api.scores import VERSION_SUFFIX, ScoreIndex
from training.registry import CHAMPION, champion_version
from training.tracking import configure_mlflow, is_local_store, tracking_uri

log = logging.getLogger(__name__)

RECOMMENDER = "recommender"
UNREGISTERED = "unregistered"
NO_ALIAS = "none"


@dataclass(frozen=True, order=True)
class ModelInfo:
    """One served model version.

    Attributes
    ----------
    model : str
        Model family (``churn``, ``conversion_intent``, ``recommender``, ...).
    version : str
        Registered model version (a decimal number), or ``unregistered``.
    alias : str
        Registry alias it was loaded by (``champion``), or ``none``.
    """

    model: str
    version: str
    alias: str


def served_models(
    settings: Settings, scores: ScoreIndex | None, *, with_recommender: bool
) -> list[ModelInfo]:
    """Every model version a freshly loaded set of artifacts serves.

    Parameters
    ----------
    settings : Settings
    scores : ScoreIndex or None
        The loaded batch scores (None: not loaded, no score models).
    with_recommender : bool
        Whether a trained recommender was loaded.

    Returns
    -------
    list of ModelInfo
        Sorted. Never raises: a version that cannot be read is left out and logged (the
        artifacts themselves loaded fine).
    """
    out: list[ModelInfo] = []
    if scores is not None:
        try:
            out += score_models(scores.source)
        except (OSError, pa.ArrowException) as exc:
            log.warning("score model versions unreadable: %s", type(exc).__name__)
    if with_recommender:
        try:
            out.append(recommender_model(settings))
        except Exception as exc:  # a registry hiccup must not fail a (re)load
            log.warning("recommender version unknown: %s", type(exc).__name__)
    return sorted(out)


def score_models(scores_file: str | Path) -> list[ModelInfo]:
    """Model versions that produced a batch scores file.

    Parameters
    ----------
    scores_file : str or Path
        A ``customer_scores_as_of=*.parquet`` file (see :mod:`serving.api.scores`).

    Returns
    -------
    list of ModelInfo
        One per (model, distinct non-null version) of every ``<model>_model_version``
        column, sorted; alias ``champion``.
    """
    names = pq.read_schema(scores_file).names
    columns = [n for n in names if n.endswith(VERSION_SUFFIX)]
    if not columns:
        return []
    table = pq.read_table(scores_file, columns=columns)
    out = []
    for name in columns:
        col = table[name]
        if not pa.types.is_integer(col.type):
            col = pc.cast(col, pa.int64())
        for v in pc.unique(col.drop_null()).to_pylist():
            out.append(ModelInfo(name.removesuffix(VERSION_SUFFIX), str(int(v)), CHAMPION))
    return sorted(out)


def recommender_model(settings: Settings) -> ModelInfo:
    """The registry version of the recommender just loaded by serving.

    :func:`serving.next_best_offer.load_next_best_offers` prefers
    ``klantbeeld-recommender@champion`` and keeps its download in
    ``<home>/cache/recommender-v<N>``; when that folder exists for the current champion
    ``N``, that is the version served. Otherwise the local model was served. A local MLflow
    store that does not exist is not created.

    Parameters
    ----------
    settings : Settings
        Home folder and MLflow store.

    Returns
    -------
    ModelInfo
    """
    version = _champion_version(settings)
    cache = Path(settings.home) / "cache" / f"{RECOMMENDER}-v{version}"
    if version is not None and (cache / "params.json").is_file():
        return ModelInfo(RECOMMENDER, str(version), CHAMPION)
    return ModelInfo(RECOMMENDER, UNREGISTERED, NO_ALIAS)


def _champion_version(settings: Settings) -> int | None:
    uri = tracking_uri(settings)
    if is_local_store(uri) and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    configure_mlflow(settings)
    return champion_version(RECOMMENDER)


__all__ = ["ModelInfo", "recommender_model", "score_models", "served_models"]
