"""MLflow tracking setup: which store, which experiment, which run.

Default store (ARCHITECTURE §5): a SQLite file ``<home>/mlflow.db`` with artifacts in
``<home>/mlartifacts``. ``KLANTBEELD_MLFLOW_TRACKING_URI`` (the setting) or, failing that,
``MLFLOW_TRACKING_URI`` points at another store or a tracking server instead. Nothing here
runs at import; call :func:`configure_mlflow` first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import mlflow

    from klantbeeld.settings import Settings

log = logging.getLogger(__name__)

EXPERIMENT_PREFIX = "klantbeeld-"
RUN_ID_ENV = "MLFLOW_RUN_ID"


def experiment_name(model: str) -> str:
    """Return the MLflow experiment (and registered-model) name of ``model``.

    Parameters
    ----------
    model : str
        Model family, e.g. ``"churn"``.

    Returns
    -------
    str
        ``"klantbeeld-<model>"``.
    """
    if not model or not model.replace("_", "").isalnum():
        raise ValueError(f"model must be a non-empty identifier, got {model!r}")
    return f"{EXPERIMENT_PREFIX}{model}"


def tracking_uri(settings: Settings) -> str:
    """Return the tracking URI that :func:`configure_mlflow` would use, without side effects.

    Order: ``settings.mlflow_tracking_uri`` (``KLANTBEELD_MLFLOW_TRACKING_URI``), then the
    ``MLFLOW_TRACKING_URI`` environment variable, then ``sqlite:///<home>/mlflow.db``.
    """
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return settings.resolved_tracking_uri


def is_local_store(uri: str) -> bool:
    """Return True when ``uri`` is a SQLite file store on this machine."""
    return uri.startswith("sqlite:///")


def configure_mlflow(settings: Settings | None = None) -> str:
    """Point MLflow at the project's tracking store and return its URI.

    For the default local store the SQLite file's folder and the artifact folder
    (``settings.artifact_root``) are created. Tracking and registry use the same URI.

    Parameters
    ----------
    settings : Settings, optional
        Project settings; default :func:`klantbeeld.settings.get_settings`.

    Returns
    -------
    str
        The tracking URI now in use.
    """
    import mlflow

    from klantbeeld.settings import get_settings

    settings = settings or get_settings()
    uri = tracking_uri(settings)
    if is_local_store(uri):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    log.info("MLflow tracking store: %s", uri)
    return uri


def ensure_experiment(model: str, settings: Settings | None = None) -> str:
    """Create (if needed) and return the id of the experiment ``klantbeeld-<model>``.

    On the local store the experiment's artifacts go to
    ``<artifact_root>/klantbeeld-<model>``, never to a folder relative to the working
    directory. Call :func:`configure_mlflow` first.
    """
    import mlflow

    from klantbeeld.settings import get_settings

    settings = settings or get_settings()
    name = experiment_name(model)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if is_local_store(mlflow.get_tracking_uri()):
        location = (settings.artifact_root / name).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


@contextmanager
def start_run(
    model: str,
    settings: Settings | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Configure the store, open the experiment of ``model`` and start one run in it.

    Yields the active run; the run ends (status FAILED on an exception) when the block exits.
    """
    import mlflow

    configure_mlflow(settings)
    exp_id = ensure_experiment(model, settings)
    tags = dict(tags or {})
    # Under `mlflow run`, MLFLOW_RUN_ID names the project's own run; each job still gets
    # its own run in its model's experiment, linked to the project run by a tag.
    parent = os.environ.pop(RUN_ID_ENV, None)
    if parent:
        tags.setdefault("klantbeeld.project_run_id", parent)
    try:
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags) as run:
            yield run
    finally:
        if parent:
            os.environ[RUN_ID_ENV] = parent


def ui_command(settings: Settings | None = None) -> str:
    """Return the shell command that opens the MLflow UI on the project's store."""
    from klantbeeld.settings import get_settings

    settings = settings or get_settings()
    uri = tracking_uri(settings)
    if is_local_store(uri):
        return (
            f"mlflow ui --backend-store-uri {uri} "
            f"--default-artifact-root {settings.artifact_root.as_uri()}"
        )
    return f"open {uri} (MLflow tracking server)"
