"""Batch scoring: every champion score for every customer at one point in time.

:func:`score_customers` builds the feature snapshot at ``as_of``, scores every customer with
the champion (registry alias ``champion``) of each binary model, and writes one Parquet
row per customer: ``customer_id``, ``as_of`` and per model ``<model>_score`` (calibrated
probability), ``<model>_model_version`` and ``<model>_top_up`` / ``<model>_top_down``
(up to 3 feature names pushing the score up / down). With a repurchase-timing champion it
adds, from :func:`training.repurchase_scores.repurchase_table`, ``repurchase_timing_score``
(probability that the customer's next order of anything bought before falls within the
model's horizon; 0 for customers with no repurchasable history),
``repurchase_timing_model_version``,
``repurchase_timing_expected_days`` (days after T, NaN without history) and
``repurchase_timing_next_item`` (the item or category most likely bought within the
horizon) with ``repurchase_timing_top_up`` / ``_top_down`` (up to 3 features pushing that
pair's weekly hazard up / down). With a CLV champion it adds ``expected_purchases_<H>d``,
``clv_<H>d`` (EUR) and ``clv_model_version`` (:mod:`training.clv_scoring`). The file is
written to a temporary name and renamed, so a failed run leaves the previous file intact.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract as c
from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings, get_settings
from models.base import TOP_DOWN, TOP_UP
from models.inputs import model_inputs
from training.repurchase_scores import load_champion as load_repurchase_champion
from training.repurchase_scores import repurchase_table

log = logging.getLogger(__name__)

BINARY_MODELS: tuple[str, ...] = ("conversion_intent", "churn")
REPURCHASE = "repurchase_timing"
CLV = "clv"
SCORED_MODELS: tuple[str, ...] = (*BINARY_MODELS, REPURCHASE, CLV)
CHUNK_ROWS = 200_000
EXPLAIN_K = 3


def scores_path(settings: Settings, as_of: datetime) -> Path:
    """Default output: ``<home>/scores/customer_scores_as_of=YYYY-MM-DD.parquet``."""
    return settings.home / "scores" / f"customer_scores_as_of={as_of:%Y-%m-%d}.parquet"


def write_scores(
    table: pa.Table,
    as_of: datetime,
    path: Path,
    versions: dict[str, int] | None = None,
    started: float | None = None,
) -> Path:
    """Append the ``as_of`` column (naive UTC, µs) to ``table`` and write it to ``path``.

    Written to a temporary name beside ``path`` and renamed, so a failed run leaves the
    previous file intact. Logs the row count, the model ``versions`` and the seconds
    since ``started`` (a ``time.perf_counter()`` value). Returns ``path``.
    """
    rows = table.num_rows
    table = table.append_column(
        "as_of", pa.array(np.full(table.num_rows, np.datetime64(as_of, "us")), pa.timestamp("us"))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - started if started is not None else 0.0
    log.info("scored %d customers with %s at %s -> %s (%.1fs)", rows, versions or {},
             as_of.date(), path, seconds)  # fmt: skip
    return path


def load_champions(models: Sequence[str]) -> dict[str, tuple[int, Any]]:
    """Load the champion scorer of each model that has one: ``{model: (version, scorer)}``."""
    from models.pyfunc import unwrap_scorer
    from training import registry

    out: dict[str, tuple[int, Any]] = {}
    for m in models:
        try:
            version, pyfunc = registry.load_champion(m)
        except NotTrainedError:
            log.warning("no champion for %s; its columns are left out", m)
            continue
        out[m] = (version, unwrap_scorer(pyfunc))
    return out


def score_frame(
    customer: pd.DataFrame, champions: dict[str, tuple[int, Any]], k: int = EXPLAIN_K
) -> pa.Table:
    """Score model inputs (:func:`models.inputs.model_inputs`) with each champion; return
    the output table."""
    ids = customer[c.CUSTOMER_ID].astype(str).to_numpy()
    columns: dict[str, pa.Array] = {c.CUSTOMER_ID: pa.array(ids, pa.string())}
    for m, (version, scorer) in champions.items():
        probs, ups, downs = [], [], []
        for start in range(0, len(customer), CHUNK_ROWS):
            part = customer.iloc[start : start + CHUNK_ROWS]
            probs.append(scorer.predict_proba(part))
            e = scorer.explain(part, k=k)
            ups.extend(e[TOP_UP].tolist())
            downs.extend(e[TOP_DOWN].tolist())
        p = np.concatenate(probs) if probs else np.empty(0)
        columns[f"{m}_score"] = pa.array(p, pa.float64())
        columns[f"{m}_model_version"] = pa.array(np.full(len(p), version, np.int32))
        columns[f"{m}_top_up"] = pa.array(ups, pa.list_(pa.string()))
        columns[f"{m}_top_down"] = pa.array(downs, pa.list_(pa.string()))
    return pa.table(columns)


def repurchase_columns(scores: Any, ids: np.ndarray, model: Any = None) -> dict[str, pa.Array]:
    """The ``repurchase_timing_*`` columns for customers ``ids`` (in that order).

    Parameters
    ----------
    scores : training.repurchase_scores.RepurchaseScores
        Pair and customer scores at the same cutoff.
    ids : numpy.ndarray
        Customer ids of the output rows.
    model : models.repurchase_timing.RepurchaseTimingModel, optional
        The model that scored ``scores``; with it (and ``scores.features``) the columns
        ``repurchase_timing_top_up`` / ``_top_down`` explain each customer's most likely
        next item (:meth:`~models.repurchase_timing.RepurchaseTimingModel.explain`).

    Returns
    -------
    dict of column name to pyarrow.Array
        See the module docstring; customers without pairs get score 0, NaN days, a null
        next item and empty explanations.
    """
    from models.base import TOP_DOWN, TOP_UP
    from models.repurchase_timing import pair_key

    key = pair_key(scores.level)
    cust = scores.customers.set_index(c.CUSTOMER_ID).reindex(ids)
    order = np.lexsort(
        (
            scores.pairs[key].to_numpy(),
            -scores.pairs["p_within_horizon"].to_numpy(),
            scores.pairs[c.CUSTOMER_ID].to_numpy(),
        )
    )
    ranked = scores.pairs.iloc[order]
    first = ~ranked[c.CUSTOMER_ID].duplicated().to_numpy()
    top_rows = order[first]  # row position in pairs (and features) of each customer's top pair
    top = pd.Series(
        scores.pairs[key].to_numpy()[top_rows],
        index=scores.pairs[c.CUSTOMER_ID].to_numpy()[top_rows],
    ).reindex(ids)
    version = int(scores.model_version) if str(scores.model_version).isdigit() else -1
    p = cust["p_next_order_within_horizon"].fillna(0.0).to_numpy(dtype=np.float64)
    out = {
        f"{REPURCHASE}_score": pa.array(p, pa.float64()),
        f"{REPURCHASE}_model_version": pa.array(np.full(len(ids), version, np.int32)),
        f"{REPURCHASE}_expected_days": pa.array(
            cust["next_order_expected_days"].to_numpy(dtype=np.float64), pa.float64()
        ),
        f"{REPURCHASE}_next_item": pa.array(
            [None if pd.isna(v) else str(v) for v in top.to_numpy()], pa.string()
        ),
    }
    if model is not None and scores.features is not None:
        why = model.explain(scores.features.iloc[top_rows].reset_index(drop=True))
        why.index = scores.pairs[c.CUSTOMER_ID].to_numpy()[top_rows]
        why = why.reindex(ids)
        for column in (TOP_UP, TOP_DOWN):
            values = [v if isinstance(v, list) else [] for v in why[column].to_numpy()]
            out[f"{REPURCHASE}_{column}"] = pa.array(values, pa.list_(pa.string()))
    return out


def score_customers(
    settings: Settings | None,
    as_of: datetime | date | str,
    *,
    data: Path | None = None,
    out: Path | None = None,
    models: Sequence[str] = SCORED_MODELS,
) -> Path:
    """Score every customer created before ``as_of`` with every champion; write Parquet.

    Parameters
    ----------
    settings : Settings or None
        Default :func:`klantbeeld.settings.get_settings`.
    as_of : datetime, date or ISO string
        Snapshot time T (naive UTC; a date means midnight). Only events before T are used.
    data : Path, optional
        Shop folder or DuckDB file; default ``settings.resolved_data_dir``.
    out : Path, optional
        Output Parquet file; default :func:`scores_path`.
    models : sequence of str
        Model families whose champions score.

    Returns
    -------
    Path
        The Parquet file written (one row per customer, see module docstring).

    Raises
    ------
    NotTrainedError
        When none of ``models`` has a champion.
    """
    from features.shop import open_shop
    from features.snapshot import build_snapshot, normalize_as_of
    from training.tracking import configure_mlflow

    settings = settings or get_settings()
    t0 = time.perf_counter()
    as_of = normalize_as_of(as_of)
    configure_mlflow(settings)
    champions = load_champions([m for m in models if m not in (REPURCHASE, CLV)])
    repurchase = None
    if REPURCHASE in models:
        try:
            repurchase = load_repurchase_champion()
        except NotTrainedError:
            log.warning("no champion for %s; its columns are left out", REPURCHASE)
    clv = None
    if CLV in models:
        from training.clv_scoring import load_clv_champion

        clv = load_clv_champion()
    if not champions and repurchase is None and clv is None:
        raise NotTrainedError(
            f"no champion for any of {list(models)}; run `klantbeeld train all` first"
        )
    data = Path(data) if data is not None else settings.resolved_data_dir
    shop = open_shop(data, lenient=settings.lenient, threads=settings.threads)
    snap = build_snapshot(shop, as_of)
    inputs = model_inputs(snap)
    table = score_frame(inputs, champions)
    if repurchase is not None:
        model, level, version = repurchase
        scores = repurchase_table(settings, as_of, snapshot=snap, model=model, level=level)
        scores = dataclasses.replace(scores, model_version=version)
        ids = table[c.CUSTOMER_ID].to_numpy(zero_copy_only=False)
        for name, column in repurchase_columns(scores, ids, model).items():
            table = table.append_column(name, column)
    if clv is not None:
        from training.clv_scoring import clv_columns

        for name, column in clv_columns(inputs, *clv).items():
            table = table.append_column(name, column)
    path = Path(out) if out is not None else scores_path(settings, as_of)
    versions = {m: v for m, (v, _) in champions.items()}
    return write_scores(table, as_of, path, versions, t0)
