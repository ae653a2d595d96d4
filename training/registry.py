"""Model registry: the one place that names, registers, promotes and loads models.

Every training job registers its run's model (logged under :data:`MODEL_ARTIFACT`) as
``challenger`` (:func:`register_challenger`) and applies the promotion rule below
(:func:`promote_if_better`); every consumer (batch scoring, the recommender and
in-market services, the API) loads a model by alias through :func:`load_champion`, or a
registered version's artifact folder through :func:`registered_folder`. Local model
folders live at :func:`model_dir`. Test periods are written by :func:`format_test_period`.

Promotion rule (documented in ``docs/models/*.md``): a challenger becomes champion when

1. there is no champion yet, or
2. ``force`` is set, or
3. its test metric beats the champion's on the *same test period*. Each training run
   stores its test period as run tag ``test_period`` (``"<cutoff>/<end>"``, ISO dates).
   When the champion was tested on another period, the training job re-evaluates the
   champion on the challenger's test period and logs it on the challenger's run as metric
   ``champion_<metric>`` with tag ``champion_compared_version``; that number is used.
   Without a comparable number nothing is promoted.

Ties keep the current champion. The decision itself is the plain function
:func:`decide`; :func:`promote_if_better` reads the registry, decides and moves the alias.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from klantbeeld.errors import NotTrainedError
from training.tracking import configure_mlflow, experiment_name, is_local_store, tracking_uri

if TYPE_CHECKING:
    from klantbeeld.settings import Settings

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
TEST_PERIOD_TAG = "test_period"
COMPARED_VERSION_TAG = "champion_compared_version"
MODEL_ARTIFACT = "model"


def registered_model_name(model: str) -> str:
    """Return the registered-model name of ``model`` (``"klantbeeld-<model>"``)."""
    return experiment_name(model)


def format_test_period(start: datetime | date, end: datetime | date) -> str:
    """Return the ``test_period`` tag of a test window: ``"<start>/<end>"`` in ISO dates.

    Every training job writes its test period with this function, so two runs are on the
    same holdout exactly when their tags are equal.

    Parameters
    ----------
    start, end : datetime or date
        First and last day of the test window (the cutoff T and T + horizon; times of
        day are dropped).

    Returns
    -------
    str
        E.g. ``"2026-10-17/2026-10-31"``.
    """
    first = start.date() if isinstance(start, datetime) else start
    last = end.date() if isinstance(end, datetime) else end
    if last < first:
        raise ValueError(f"test period end {last} is before its start {first}")
    return f"{first.isoformat()}/{last.isoformat()}"


def model_dir(settings: Settings, model: str) -> Path:
    """Local folder of the last trained ``model``: ``<home>/models/<model>`` (not created)."""
    experiment_name(model)  # validates the name
    return Path(settings.home) / "models" / model


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of a promotion check.

    Attributes
    ----------
    model : str
        Model family, e.g. ``"churn"``.
    version : int
        The challenger's registered version.
    promoted : bool
        Whether alias ``champion`` now points at ``version``.
    reason : str
        Why, in one sentence.
    metric : str
        Metric compared, e.g. ``"test_roc_auc"``.
    challenger_value : float | None
        The challenger's metric value.
    champion_version : int | None
        The champion before the decision (None if there was none).
    champion_value : float | None
        The champion's metric on the challenger's test period, if known.
    """

    model: str
    version: int
    promoted: bool
    reason: str
    metric: str
    challenger_value: float | None = None
    champion_version: int | None = None
    champion_value: float | None = None


def decide(
    challenger_value: float | None,
    champion_value: float | None,
    *,
    has_champion: bool,
    comparable: bool,
    higher_is_better: bool = True,
    force: bool = False,
) -> tuple[bool, str]:
    """Apply the promotion rule to numbers; return ``(promote, reason)``.

    Parameters
    ----------
    challenger_value, champion_value : float or None
        Test metric of challenger and champion on the same test period.
    has_champion : bool
        Whether a champion exists.
    comparable : bool
        Whether ``champion_value`` was measured on the challenger's test period.
    higher_is_better : bool
        Direction of the metric.
    force : bool
        Promote regardless.
    """
    if force:
        return True, "forced"
    if not has_champion:
        return True, "no champion yet"
    if challenger_value is None:
        return False, "challenger has no value for the metric"
    if champion_value is None or not comparable:
        return False, "champion has no metric on the challenger's test period"
    better = (
        challenger_value > champion_value if higher_is_better else challenger_value < champion_value
    )
    if better:
        return True, f"beats champion ({challenger_value:.5f} vs {champion_value:.5f})"
    return False, f"does not beat champion ({challenger_value:.5f} vs {champion_value:.5f})"


def register_challenger(run_id: str, model: str, artifact_path: str = MODEL_ARTIFACT) -> int:
    """Register the model logged at ``artifact_path`` of run ``run_id`` as ``challenger``.

    Parameters
    ----------
    run_id : str
        MLflow run that logged the model.
    model : str
        Model family; the registered name is ``klantbeeld-<model>``.
    artifact_path : str
        Name the model was logged under in that run.

    Returns
    -------
    int
        The new registered version, now aliased ``challenger``.
    """
    import mlflow

    name = registered_model_name(model)
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    logged = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{artifact_path}'",
        output_format="list",
    )
    uri = logged[0].model_uri if logged else f"runs:/{run_id}/{artifact_path}"
    mv = mlflow.register_model(uri, name)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    log.info("registered %s version %s as %s", name, mv.version, CHALLENGER)
    return int(mv.version)


def champion_version(model: str) -> int | None:
    """Return the version aliased ``champion`` of ``klantbeeld-<model>``, or None."""
    return alias_version(model, CHAMPION)


def alias_version(model: str, alias: str) -> int | None:
    """Return the version of ``klantbeeld-<model>`` carrying ``alias``, or None.

    Reads the registry MLflow currently points at (:func:`training.tracking.configure_mlflow`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        return int(client.get_model_version_by_alias(registered_model_name(model), alias).version)
    except MlflowException:
        return None


def version_run(model: str, version: int) -> Any:
    """Return the MLflow run (``mlflow.entities.Run``) that logged ``version`` of ``model``."""
    import mlflow

    client = mlflow.MlflowClient()
    mv = client.get_model_version(registered_model_name(model), str(version))
    return client.get_run(str(mv.run_id))


def load_version(model: str, version: int) -> Any:
    """Load registered ``version`` of ``klantbeeld-<model>`` as an MLflow pyfunc model."""
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{registered_model_name(model)}/{int(version)}")


def load_champion(model: str, alias: str = CHAMPION) -> tuple[int, Any]:
    """Load the version of ``klantbeeld-<model>`` carrying ``alias`` (default ``champion``).

    Call :func:`training.tracking.configure_mlflow` first.

    Parameters
    ----------
    model : str
        Model family, e.g. ``"churn"``.
    alias : str
        Registry alias, ``"champion"`` or ``"challenger"``.

    Returns
    -------
    (int, mlflow.pyfunc.PyFuncModel)
        The version and its pyfunc model (unwrap it with the model family's
        ``models.*_pyfunc.unwrap_*`` function).

    Raises
    ------
    NotTrainedError
        No version carries the alias.
    """
    version = alias_version(model, alias)
    if version is None:
        raise NotTrainedError(
            f"no {registered_model_name(model)}@{alias}; run `klantbeeld train {model}` first"
        )
    return version, load_version(model, version)


def registered_folder(settings: Settings, model: str, alias: str, artifact: str) -> Path | None:
    """Local copy of folder ``artifact`` inside the model of ``klantbeeld-<model>@<alias>``.

    The folder is downloaded once to ``<home>/cache/<model>-v<version>`` (through a temp
    folder renamed into place) and reused afterwards.

    Parameters
    ----------
    settings : Settings
        The MLflow store and ``home``.
    model : str
        Model family, e.g. ``"recommender"``.
    alias : str
        Registry alias.
    artifact : str
        Name of a folder inside the logged model holding a ``params.json``.

    Returns
    -------
    Path or None
        The cached folder; None when the local store does not exist yet or no version
        carries the alias.

    Raises
    ------
    NotTrainedError
        The version exists but its model has no ``artifact`` folder.
    """
    uri = tracking_uri(settings)
    if is_local_store(uri) and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    import mlflow

    configure_mlflow(settings)
    version = alias_version(model, alias)
    if version is None:
        return None
    name = registered_model_name(model)
    cache = Path(settings.home) / "cache" / f"{model}-v{version}"
    if not (cache / "params.json").is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}.", dir=cache.parent))
        try:
            got = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp)
                )
            )
            found = sorted(got.rglob(f"{artifact}/params.json"))
            if not found:
                raise NotTrainedError(f"{name} version {version} has no {artifact} artifact")
            if cache.exists():
                shutil.rmtree(cache)
            os.replace(found[0].parent, cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("loading %s@%s (version %s) from %s", name, alias, version, cache)
    return cache


def promote_if_better(
    model: str,
    version: int,
    metric: str,
    higher_is_better: bool = True,
    force: bool = False,
) -> PromotionDecision:
    """Move alias ``champion`` to ``version`` when the rule in this module's docstring allows.

    Parameters
    ----------
    model : str
        Model family.
    version : int
        Challenger version (registered with :func:`register_challenger`).
    metric : str
        Run metric to compare, e.g. ``"test_roc_auc"``.
    higher_is_better : bool
        Direction of ``metric``.
    force : bool
        Promote regardless of metrics.

    Returns
    -------
    PromotionDecision
    """
    import mlflow

    client = mlflow.MlflowClient()
    name = registered_model_name(model)
    chal_run = client.get_run(str(client.get_model_version(name, str(version)).run_id))
    chal_value = chal_run.data.metrics.get(metric)
    champ = champion_version(model)

    champ_value: float | None = None
    comparable = False
    if champ is not None and champ != version:
        champ_run = client.get_run(str(client.get_model_version(name, str(champ)).run_id))
        same_period = chal_run.data.tags.get(
            TEST_PERIOD_TAG
        ) is not None and chal_run.data.tags.get(TEST_PERIOD_TAG) == champ_run.data.tags.get(
            TEST_PERIOD_TAG
        )
        if same_period:
            champ_value, comparable = champ_run.data.metrics.get(metric), True
        elif chal_run.data.tags.get(COMPARED_VERSION_TAG) == str(champ):
            champ_value = chal_run.data.metrics.get(f"champion_{metric}")
            comparable = champ_value is not None

    if champ == version:
        promoted, reason = False, "already champion"
    else:
        promoted, reason = decide(
            chal_value,
            champ_value,
            has_champion=champ is not None,
            comparable=comparable,
            higher_is_better=higher_is_better,
            force=force,
        )
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        log.info("%s version %s is now %s: %s", name, version, CHAMPION, reason)
    else:
        log.info("%s version %s not promoted: %s", name, version, reason)
    return PromotionDecision(
        model=model,
        version=int(version),
        promoted=promoted,
        reason=reason,
        metric=metric,
        challenger_value=chal_value,
        champion_version=champ,
        champion_value=champ_value,
    )
