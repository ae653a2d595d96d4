"""Point-in-time features joined to labels at every cutoff of a backtest plan.

:func:`assemble` builds, for a :class:`training.binary_tasks.BinaryTask`, the snapshot
(:func:`default_snapshot`) and the labels at each cutoff and stacks the training cutoffs
into :class:`BacktestFrames`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.errors import KlantbeeldError
from klantbeeld.settings import Settings
from models.inputs import model_inputs, replenishment_manifest
from models.seasonality import SeasonalPlan
from training.backtest import BacktestPlan
from training.binary_tasks import LABEL, BinaryTask

log = logging.getLogger(__name__)

SnapshotFn = Callable[[Any, datetime], Any]


def default_snapshot(shop: Any, as_of: datetime) -> Any:
    """The project's snapshot builder (:func:`features.snapshot.build_snapshot`), limited
    to the tables :func:`models.inputs.model_inputs` reads (customer and customer x item;
    the customer x category table comes back empty)."""
    from features import feature_groups as fg
    from features.snapshot import build_snapshot

    return build_snapshot(shop, as_of, tables=(fg.CUSTOMER, fg.CUSTOMER_ITEM))


@dataclass
class BacktestFrames:
    """Features joined to labels at every cutoff of a plan.

    ``train`` stacks the training cutoffs (column ``cutoff`` says which); every frame has
    ``customer_id``, the feature columns and ``label``. ``snapshot_seconds`` is the
    time of the whole assembly (snapshots, labels, joins), ``labels_seconds`` the part
    spent on labels. ``seasonal`` holds the frames at the cutoffs of a seasonal
    adjustment (keys ``reference``, ``test``, ``deploy``; :mod:`models.seasonality`),
    or None.
    """

    plan: BacktestPlan
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    features: list[str]
    manifest: list[Any]
    snapshot_seconds: float = 0.0
    labels_seconds: float = 0.0
    seasonal: dict[str, pd.DataFrame] | None = None
    seasonal_plan: SeasonalPlan | None = None

    def xy(self, split: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Feature frame and label array of ``split`` (``train``, ``valid`` or ``test``)."""
        df = getattr(self, split)
        return df[self.features], df[LABEL].to_numpy(dtype=np.int8)


def _frame_at(
    shop: Any,
    task: BinaryTask,
    as_of: datetime,
    settings: Settings,
    snapshot_fn: SnapshotFn,
    cache: dict[datetime, Any] | None,
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, list[Any]]:
    t0 = time.perf_counter()
    if cache is not None and as_of in cache:
        snap = cache[as_of]
    else:
        snap = snapshot_fn(shop, as_of)
        if cache is not None:
            cache[as_of] = snap
    t1 = time.perf_counter()
    labels = task.labels(shop, as_of, settings)[[c.CUSTOMER_ID, LABEL]]
    if timings is not None:
        timings["snapshots"] = timings.get("snapshots", 0.0) + t1 - t0
        timings["labels"] = timings.get("labels", 0.0) + time.perf_counter() - t1
    df = model_inputs(snap).merge(labels, on=c.CUSTOMER_ID, how="inner", validate="one_to_one")
    if len(df) < len(labels):
        log.warning(
            "%s at %s: %d labelled customers have no snapshot row",
            task.name,
            as_of.date(),
            len(labels) - len(df),
        )
    return df, [*snap.manifest, *replenishment_manifest()]


def assemble(
    shop: Any,
    task: BinaryTask,
    plan: BacktestPlan,
    settings: Settings,
    snapshot_fn: SnapshotFn = default_snapshot,
    cache: dict[datetime, Any] | None = None,
    seasonal: SeasonalPlan | None = None,
) -> BacktestFrames:
    """Build the snapshot + labels at every cutoff of ``plan`` (and of ``seasonal``, the
    lagged cutoffs of a seasonal adjustment); stack the training cutoffs."""
    t0 = time.perf_counter()
    parts = []
    manifest: list[Any] = []
    tm: dict[str, float] = {}
    for t in plan.train:
        df, manifest = _frame_at(shop, task, t, settings, snapshot_fn, cache, tm)
        parts.append(df.assign(cutoff=pd.Timestamp(t)))
    valid, _ = _frame_at(shop, task, plan.valid, settings, snapshot_fn, cache, tm)
    test, manifest = _frame_at(shop, task, plan.test, settings, snapshot_fn, cache, tm)
    lagged = None
    if seasonal is not None:
        lagged = {
            key: _frame_at(shop, task, t, settings, snapshot_fn, cache, tm)[0]
            for key, t in seasonal.cutoffs.items()
        }
    train = pd.concat(parts, ignore_index=True)
    features = [col for col in test.columns if col not in (c.CUSTOMER_ID, LABEL)]
    for name, df in (("train", train), ("valid", valid), ("test", test)):
        if df[LABEL].nunique() < 2:
            raise KlantbeeldError(
                f"{task.name}: the {name} period has {len(df)} labelled customers and only "
                "one class; the data is too small or too short for this model"
            )
    secs = time.perf_counter() - t0
    log.info(
        "%s backtest rows: train %d, valid %d, test %d (%.1fs: snapshots %.1fs, labels %.1fs)",
        task.name,
        len(train),
        len(valid),
        len(test),
        secs,
        tm.get("snapshots", 0.0),
        tm.get("labels", 0.0),
    )
    return BacktestFrames(
        plan, train, valid, test, features, manifest, secs, tm.get("labels", 0.0), lagged, seasonal
    )


class _KeepOnly(dict):
    """A snapshot cache that stores only the given cutoffs and drops the rest."""

    def __init__(self, keep: set[datetime]) -> None:
        super().__init__()
        self.keep = keep

    def __setitem__(self, key: datetime, value: Any) -> None:
        if key in self.keep:
            super().__setitem__(key, value)
