"""Batch scoring on Spark: the champion pyfunc models as ``mlflow.pyfunc.spark_udf``.

``klantbeeld score --engine spark`` calls :func:`score_customers_spark`. It builds the
feature snapshot at T on the feature backend (``KLANTBEELD_FEATURE_BACKEND``; with
``pyspark`` the snapshot itself runs on Spark), puts the model inputs in a Spark
DataFrame, and scores them with each binary champion (``conversion_intent``, ``churn``)
wrapped by :func:`mlflow.pyfunc.spark_udf`, so the executors score their partitions in
parallel. The output has the columns of the local engine's binary scores
(:func:`training.batch_score.score_customers`): ``customer_id``, ``<model>_score``
(calibrated probability) and ``<model>_model_version`` per model, and ``as_of``; one row
per customer, sorted by ``customer_id``. Explanations (``_top_up``/``_top_down``), the
repurchase-timing and the CLV columns are the local engine's only. The Parquet file is
written to a temporary name and renamed, so a failed run leaves the previous file intact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features import contract as c
from features import feature_groups as fg
from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings, get_settings
from models.inputs import model_inputs
from training.batch_score import BINARY_MODELS, scores_path, write_scores

log = logging.getLogger(__name__)


def champion_uris(models: Sequence[str]) -> dict[str, tuple[int, str]]:
    """``{model: (version, models:/ URI)}`` of each of ``models`` that has a champion.

    Call :func:`training.tracking.configure_mlflow` first.
    """
    from training import registry

    out: dict[str, tuple[int, str]] = {}
    for m in models:
        version = registry.champion_version(m)
        if version is None:
            log.warning("no champion for %s; its columns are left out", m)
            continue
        out[m] = (version, f"models:/{registry.registered_model_name(m)}/{version}")
    return out


def spark_inputs(spark: Any, inputs: pd.DataFrame) -> Any:
    """The model inputs as a Spark DataFrame (categorical columns as their labels)."""
    frame = inputs.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(str)
    return spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False))


def score_spark_frame(
    frame: Any, champions: dict[str, tuple[int, str]], *, env_manager: str = "local"
) -> pa.Table:
    """Score a Spark DataFrame of model inputs with each champion's ``spark_udf``.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        ``customer_id`` and at least every input column of each model's signature.
    champions : dict
        ``{model: (version, model URI)}`` (:func:`champion_uris`).
    env_manager : str, default "local"
        :func:`mlflow.pyfunc.spark_udf`'s environment manager: ``local`` scores in the
        executors' own Python (klantbeeld installed there, or the code the model ships
        as ``code_paths``); ``virtualenv``/``uv`` restore the model's pinned requirements.

    Returns
    -------
    pyarrow.Table
        ``customer_id`` and per model ``<model>_score`` (float64) and
        ``<model>_model_version`` (int32), sorted by ``customer_id``.
    """
    import mlflow
    from pyspark.sql import functions as F

    spark = frame.sparkSession
    scored = frame
    for m, (_, uri) in champions.items():
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager=env_manager)
        names = mlflow.models.get_model_info(uri).signature.inputs.input_names()
        scored = scored.withColumn(f"{m}_score", udf(F.struct(*[F.col(n) for n in names])))
    table = scored.select(c.CUSTOMER_ID, *[f"{m}_score" for m in champions]).toArrow()
    table = table.sort_by(c.CUSTOMER_ID)
    columns: dict[str, pa.Array] = {c.CUSTOMER_ID: table.column(c.CUSTOMER_ID)}
    for m, (version, _) in champions.items():
        columns[f"{m}_score"] = table.column(f"{m}_score").cast(pa.float64())
        columns[f"{m}_model_version"] = pa.array(np.full(table.num_rows, version, np.int32))
    return pa.table(columns)


def score_customers_spark(
    settings: Settings | None,
    as_of: datetime | date | str,
    *,
    data: Path | None = None,
    out: Path | None = None,
    models: Sequence[str] = BINARY_MODELS,
    spark: Any = None,
    env_manager: str = "local",
) -> Path:
    """Score every customer created before ``as_of`` with the binary champions on Spark.

    Parameters
    ----------
    settings : Settings or None
        Default :func:`klantbeeld.settings.get_settings`; ``feature_backend`` picks the
        engine of the snapshot, ``mlflow_tracking_uri`` the registry.
    as_of : datetime, date or ISO string
        Snapshot time T (naive UTC; a date means midnight). Only events before T are used.
    data : Path, optional
        Shop folder or DuckDB file; default ``settings.resolved_data_dir``.
    out : Path, optional
        Output Parquet file; default :func:`training.batch_score.scores_path`.
    models : sequence of str
        Binary model families whose champions score (``conversion_intent``, ``churn``).
    spark : pyspark.sql.SparkSession, optional
        Default: the active session (``SparkSession.builder.getOrCreate()``).
    env_manager : str, default "local"
        See :func:`score_spark_frame`.

    Returns
    -------
    Path
        The Parquet file written (see the module docstring for its columns).

    Raises
    ------
    ValueError
        ``models`` names a model that is not a binary score.
    NotTrainedError
        None of ``models`` has a champion.
    """
    from features.shop import open_shop
    from features.snapshot import build_snapshot, normalize_as_of
    from training.tracking import configure_mlflow

    unknown = sorted(set(models) - set(BINARY_MODELS))
    if unknown:
        raise ValueError(f"models must be among {BINARY_MODELS} on Spark, got {unknown}")
    settings = settings or get_settings()
    t0 = time.perf_counter()
    as_of = normalize_as_of(as_of)
    configure_mlflow(settings)
    champions = champion_uris(models)
    if not champions:
        raise NotTrainedError(
            f"no champion for any of {list(models)}; run `klantbeeld train all` first"
        )
    if spark is None:
        from features.backend import active_session

        spark = active_session()
    data = Path(data) if data is not None else settings.resolved_data_dir
    shop = open_shop(
        data, lenient=settings.lenient, threads=settings.threads, backend=settings.feature_backend
    )
    snap = build_snapshot(shop, as_of, tables=(fg.CUSTOMER, fg.CUSTOMER_ITEM))
    table = score_spark_frame(
        spark_inputs(spark, model_inputs(snap)), champions, env_manager=env_manager
    )
    path = Path(out) if out is not None else scores_path(settings, as_of)
    versions = {f"{m} (spark_udf)": v for m, (v, _) in champions.items()}
    return write_scores(table, as_of, path, versions, t0)
