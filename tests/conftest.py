"""Shared test isolation.

``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in the process environment,
and :func:`training.tracking.tracking_uri` honours that variable (it is how users point
klantbeeld at a tracking server). Without this fixture a store configured by one test
module would leak into the next module that runs in the same worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True, scope="module")
def _isolate_mlflow_store() -> Iterator[None]:
    saved = {k: os.environ.pop(k, None) for k in _MLFLOW_ENV}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """``get_settings`` is cached per process: a CLI test that ran earlier in the same
    worker would otherwise hand its settings (say ``KLANTBEELD_HOME``) to the next one."""
    from klantbeeld.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def spark():
    """A local Spark session for the Spark tests (:func:`features.backend.local_session`:
    ``local[1]``, 2 shuffle partitions, no UI); every module in a worker gets the same JVM."""
    from features.backend import local_session

    return local_session(threads=1, app_name="klantbeeld-tests")
