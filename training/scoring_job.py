"""The training job of binary customer scores (conversion intent, churn).

One call of :func:`run_scoring_job` is one MLflow run:

1. plan the backtest cutoffs from the data's time range (:mod:`training.backtest`); above
   ``BacktestConfig.max_customers`` customers, restrict the shop once to a seeded sample
   of customers (:func:`sample_customers`) that every later step reads;
2. build a point-in-time feature snapshot (the tables the scorers read) and the labels at
   every cutoff, and check at one training cutoff that events at or after T do not change
   the snapshot (point in time; on a nested sample of ``pit_customers`` when larger);
3. fit LightGBM on the stacked training cutoffs, early-stop on the validation cutoff,
   refit that many trees on training + validation rows and calibrate on cross-fitted
   validation margins (:class:`models.lgbm.GradientBoostedScorer`), score the test cutoff;
4. fit and score the RFM and logistic baselines on the same rows; on the demo shop
   (``<data>/truth`` exists) also the oracle that knows the true propensities;
5. log params, metrics, plots, the feature manifest, the input description and the
   pyfunc model; register it as ``challenger`` and promote it to ``champion`` when it
   beats the champion on the same test period (:mod:`training.registry`).

The steps are separate functions so tests can run them on their own (label shuffling,
planted leaks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.errors import KlantbeeldError
from klantbeeld.settings import Settings
from models.base import Scorer
from models.baselines import LogisticBaseline, RFMBaseline
from models.churn import ChurnModel
from models.conversion_intent import ConversionIntentModel
from models.inputs import model_inputs, replenishment_manifest
from models.lgbm import GradientBoostedScorer
from models.seasonality import IntensityShift, SeasonalPlan, plan_seasonal, seasonal_shift
from training import metrics as M
from training.backtest import BacktestConfig, BacktestPlan, plan_backtest
from training.requirements import DataProfile, require, too_short
from training.result import TrainingResult
from training.threshold_curve import threshold_curve
from training.window import data_range as data_range  # re-exported (tests, notebooks)
from training.window import training_window

log = logging.getLogger(__name__)

LABEL = "label"
PRIMARY_METRIC = "test_roc_auc"
CALIBRATION_MIN_BIN = 200

SnapshotFn = Callable[[Any, datetime], Any]


class PointInTimeError(KlantbeeldError):
    """A feature snapshot at T changed when events at or after T were removed (a leak)."""


class OracleFn(Protocol):
    """A demo-shop oracle: ``(shop_dir, as_of, settings, *, customer_ids, events)``.

    Returns ``DataFrame[customer_id, p]``, the true probability of label 1 at ``as_of``
    for the customers created before it (only those of ``customer_ids`` when given),
    reading the purchases from ``events`` (a table with every purchase of those
    customers) instead of the shop's ``events`` folder when given.
    """

    def __call__(
        self,
        shop_dir: Path,
        as_of: datetime,
        settings: Settings,
        /,
        *,
        customer_ids: Sequence[str] | None = None,
        events: Any = None,
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class BinaryTask:
    """What one binary score is: its scorer, labels, horizon and (demo shop) oracle.

    Attributes
    ----------
    name : str
        Model family, e.g. ``"churn"``; the experiment is ``klantbeeld-<name>``.
    make_scorer : callable
        ``(seed, num_threads) -> GradientBoostedScorer`` (unfitted).
    labels : callable
        ``(shop, as_of, settings) -> DataFrame[customer_id, label]`` for the population.
    horizon_days : callable
        ``settings -> int``, the label horizon in days.
    oracle : OracleFn or None
        ``(shop_dir, as_of, settings, *, customer_ids=None, events=None) ->
        DataFrame[customer_id, p]``: the true probability of label 1 from the demo shop's
        ``truth/`` folder (only ``customer_ids`` when given; purchases read from ``events``
        when given).
    description : str
        One line for run descriptions.
    label_is_purchase : bool
        True when label 1 means a purchase in the horizon (conversion intent), False when
        it means none (churn); the form of the seasonal adjustment depends on it
        (:func:`models.seasonality.adjust`).
    """

    name: str
    make_scorer: Callable[[int, int], GradientBoostedScorer]
    labels: Callable[[Any, datetime, Settings], pd.DataFrame]
    horizon_days: Callable[[Settings], int]
    oracle: OracleFn | None
    description: str
    label_is_purchase: bool = True


def _conversion_labels(shop: Any, as_of: datetime, s: Settings) -> pd.DataFrame:
    from features.labels import conversion_labels

    return conversion_labels(shop, as_of, s.conversion_horizon_days, s.conversion_population_days)


def _churn_labels(shop: Any, as_of: datetime, s: Settings) -> pd.DataFrame:
    from features.labels import churn_labels

    return churn_labels(shop, as_of, s.churn_horizon_days, s.churn_population_days)


def _demo_oracle(function: str, column: str, horizon: Callable[[Settings], int]) -> OracleFn:
    """An :class:`OracleFn` over ``features.demo_shop.<function>`` (imported when called),
    whose probability column ``column`` becomes ``p``, at the horizon ``horizon(settings)``."""

    def oracle(
        shop_dir: Path,
        as_of: datetime,
        s: Settings,
        /,
        *,
        customer_ids: Sequence[str] | None = None,
        events: Any = None,
    ) -> pd.DataFrame:
        from features import demo_shop

        o = getattr(demo_shop, function)(
            shop_dir, as_of, horizon(s), customer_ids=customer_ids, events=events
        )
        return o.rename(columns={column: "p"})[[c.CUSTOMER_ID, "p"]]

    return oracle


CONVERSION_INTENT = BinaryTask(
    name="conversion_intent",
    make_scorer=lambda seed, threads: ConversionIntentModel(random_state=seed, num_threads=threads),
    labels=_conversion_labels,
    horizon_days=lambda s: s.conversion_horizon_days,
    oracle=_demo_oracle(
        "oracle_purchase_probability", "p_purchase", lambda s: s.conversion_horizon_days
    ),
    description="purchase in (T, T+H] for customers with a session in the window before T",
)
CHURN = BinaryTask(
    name="churn",
    make_scorer=lambda seed, threads: ChurnModel(random_state=seed, num_threads=threads),
    labels=_churn_labels,
    horizon_days=lambda s: s.churn_horizon_days,
    oracle=_demo_oracle("oracle_churn_probability", "p_churn", lambda s: s.churn_horizon_days),
    description="no purchase in (T, T+H] for customers with a purchase in the window before T",
    label_is_purchase=False,
)
TASKS: dict[str, BinaryTask] = {t.name: t for t in (CONVERSION_INTENT, CHURN)}


# --------------------------------------------------------------------------- data


def default_snapshot(shop: Any, as_of: datetime) -> Any:
    """The project's snapshot builder (:func:`features.snapshot.build_snapshot`), limited
    to the tables :func:`models.inputs.model_inputs` reads (customer and customer x item;
    the customer x category table comes back empty)."""
    from features import feature_groups as fg
    from features.snapshot import build_snapshot

    return build_snapshot(shop, as_of, tables=(fg.CUSTOMER, fg.CUSTOMER_ITEM))


SAMPLE_TABLE_PREFIX = "_kb_sample"


@dataclass(frozen=True)
class CustomerSample:
    """The shop a training job reads, and how many customers it kept.

    Attributes
    ----------
    shop : features.shop.Shop
        The input shop itself when nothing was sampled; otherwise the same shop whose
        ``customers``, ``events`` and ``sends`` are DuckDB temp tables holding only the
        sampled customers' rows (``items`` unchanged).
    customers_total, customers_sampled : int
        Customers in the shop and customers kept (equal when nothing was sampled).
    seconds : float
        Time spent drawing and materialising the sample.
    """

    shop: Any
    customers_total: int
    customers_sampled: int
    seconds: float = 0.0

    @property
    def sampled(self) -> bool:
        """Whether the shop was restricted to a sample."""
        return self.customers_sampled < self.customers_total


@dataclass(frozen=True)
class PreparedShop:
    """An opened shop, its time range and its customer sample, shared by several jobs.

    Made by :func:`prepare_shop`; pass it to :func:`run_scoring_job` as ``prepared`` so
    that training several models on the same data opens, validates and samples it once.

    Attributes
    ----------
    data : Path
        The shop folder or DuckDB file.
    data_range : tuple of datetime
        First event and exclusive end of the whole shop (the backtest plan's input; never
        of the sample, so the test period does not depend on it).
    sample : CustomerSample
        The shop every job reads.
    max_customers, seed : int
        The sampling rule it was drawn with.
    open_seconds : float
        Time spent opening the shop and finding its range.
    profile : training.requirements.DataProfile or None
        What the (sampled) shop holds, for the checks of what each model needs.
    """

    data: Path
    data_range: tuple[datetime, datetime]
    sample: CustomerSample
    max_customers: int
    seed: int
    open_seconds: float
    profile: DataProfile | None = None


def prepare_shop(
    data: Path, settings: Settings, config: BacktestConfig | None = None
) -> PreparedShop:
    """Open ``data``, find its time range and draw the training sample once.

    Parameters
    ----------
    data : Path
        Shop folder or DuckDB file.
    settings : Settings
        ``lenient``, ``threads``, the seed of the sample and ``train_as_of`` (when set,
        the shop is cut there: :meth:`features.shop.Shop.until`).
    config : BacktestConfig, optional
        Its ``max_customers`` caps the sample (:func:`sample_customers`).

    Returns
    -------
    PreparedShop
    """
    from features.shop import open_shop
    from training.requirements import profile_shop

    config = config or BacktestConfig()
    t0 = time.perf_counter()
    shop = open_shop(Path(data), lenient=settings.lenient, threads=settings.threads)
    shop, span = training_window(shop, settings)
    open_seconds = time.perf_counter() - t0
    sample = sample_customers(shop, config.max_customers, settings.seed)
    return PreparedShop(
        Path(data),
        span,
        sample,
        config.max_customers,
        settings.seed,
        open_seconds,
        profile_shop(sample.shop),
    )


def _sql_of(shop: Any, table: Any) -> str:
    import ibis

    return str(ibis.to_sql(table, dialect=shop.con.name))


def sample_customers(shop: Any, max_customers: int, seed: int) -> CustomerSample:
    """Restrict ``shop`` to a deterministic sample of at most ``max_customers`` customers.

    The sample is the ``max_customers`` customers with the smallest
    ``md5("<seed>:<customer_id>")`` (hex digest; ties cannot occur between distinct ids
    in practice and are broken by id): it depends only on the ids and the seed, not on
    row order, cutoffs, threads or the machine, and a customer in the sample of ``n``
    is in the sample of every larger ``n``. The sampled customers and their events are
    materialised once as DuckDB temp tables on the shop's connection
    (``_kb_sample<n>_<seed>_*``; sends too, for the email-engagement features), so every
    later snapshot and label query scans only them.

    Parameters
    ----------
    shop : features.shop.Shop
        An opened shop on DuckDB.
    max_customers : int
        Customers to keep (>= 1). With no more customers than this the shop is returned
        unchanged.
    seed : int
        Seed of the draw.

    Returns
    -------
    CustomerSample
    """
    if max_customers < 1:
        raise ValueError(f"max_customers must be >= 1, got {max_customers}")
    t0 = time.perf_counter()
    raw = shop.con.con
    customers_sql = _sql_of(shop, shop.customers)
    total = int(raw.execute(f"SELECT count(*) FROM ({customers_sql})").fetchall()[0][0])
    if total <= max_customers:
        return CustomerSample(shop, total, total, time.perf_counter() - t0)
    cid = f'"{c.CUSTOMER_ID}"'
    prefix = f"{SAMPLE_TABLE_PREFIX}{int(max_customers)}_{int(seed)}".replace("-", "m")
    ids = f"{prefix}_ids"
    raw.execute(
        f"CREATE OR REPLACE TEMP TABLE {ids} AS SELECT {cid} FROM ({customers_sql}) "
        f"ORDER BY md5(? || ':' || {cid}), {cid} LIMIT {int(max_customers)}",
        [str(seed)],
    )
    tables: dict[str, Any] = {}
    for name, table in (("customers", shop.customers), ("events", shop.events),
                        ("sends", shop.sends)):  # fmt: skip
        if table is None:
            tables[name] = None
            continue
        target = f"{prefix}_{name}"
        raw.execute(
            f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT * FROM ({_sql_of(shop, table)}) "
            f"WHERE {cid} IN (SELECT {cid} FROM {ids})"
        )
        tables[name] = shop.con.table(target)
    kept = int(raw.execute(f"SELECT count(*) FROM {ids}").fetchall()[0][0])
    secs = time.perf_counter() - t0
    log.info("training on a sample of %d of %d customers (%.1fs)", kept, total, secs)
    return CustomerSample(dataclasses.replace(shop, **tables), total, kept, secs)


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


def truncate_shop(shop: Any, as_of: datetime) -> Any:
    """The same shop with every event and send at or after ``as_of`` removed."""
    ts = pd.Timestamp(as_of).to_pydatetime()
    tag = f"{ts:%Y%m%d%H%M%S}"
    # named views (not bare filter expressions), so the result is a shop like any other
    ev = shop.con.create_view(
        f"_kb_events_before_{tag}", shop.events.filter(shop.events[c.TS] < ts), overwrite=True
    )
    sends = None
    if shop.sends is not None:
        sends = shop.con.create_view(
            f"_kb_sends_before_{tag}", shop.sends.filter(shop.sends[c.TS] < ts), overwrite=True
        )
    return dataclasses.replace(shop, events=ev, sends=sends)


def check_point_in_time(
    shop: Any,
    as_of: datetime,
    snapshot_fn: SnapshotFn = default_snapshot,
    reference: Any | None = None,
) -> None:
    """Raise :class:`PointInTimeError` if removing events at/after ``as_of`` changes the
    model inputs (:func:`models.inputs.model_inputs`) at ``as_of``; the message names the
    columns that changed.

    Parameters
    ----------
    reference : Snapshot, optional
        The snapshot of the full shop at ``as_of`` if already built.
    """
    full = reference if reference is not None else snapshot_fn(shop, as_of)
    cut = snapshot_fn(truncate_shop(shop, as_of), as_of)
    a, b = model_inputs(full), model_inputs(cut)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        raise PointInTimeError(
            f"snapshot at {as_of:%Y-%m-%d} changes shape when later events are removed"
        )
    a = a.sort_values(c.CUSTOMER_ID, kind="stable").reset_index(drop=True)
    b = b.sort_values(c.CUSTOMER_ID, kind="stable").reset_index(drop=True)
    changed = []
    for col in a.columns:
        x, y = a[col], b[col]
        same = (x == y) | (x.isna() & y.isna())
        if not bool(same.fillna(False).all()):
            changed.append(col)
    if changed:
        raise PointInTimeError(
            f"features {changed} at {as_of:%Y-%m-%d} depend on events at or after the cutoff"
        )


def oracle_for(
    task: BinaryTask,
    data: Path,
    as_of: datetime,
    settings: Settings,
    customer_ids: Sequence[str] | np.ndarray | None = None,
    shop: Any = None,
) -> pd.DataFrame:
    """The task's demo-shop oracle at ``as_of``, computed only for ``customer_ids``.

    The full oracle integrates every customer of the shop and scans the purchases of the
    whole ``events`` folder, so its time grows with the shop, not with the rows it is
    compared on. With ``customer_ids`` the oracle computes only those customers (each
    customer's probability depends only on that customer's own state, so the values are
    the full oracle's rows); with ``shop`` too it reads their purchases from that opened
    shop instead of the folder.

    Parameters
    ----------
    task : BinaryTask
        Its ``oracle`` is called; a task without one raises ``ValueError``.
    data : Path
        The demo shop folder (with ``truth/``).
    as_of : datetime
        Cutoff T (naive UTC).
    settings : Settings
        Horizons.
    customer_ids : sequence or array of str, optional
        The customers to compute; ``None``: every customer created before ``as_of``.
    shop : features.shop.Shop, optional
        An opened shop on ``data`` holding every event of ``customer_ids`` (a customer
        sample that contains them is enough): the oracle reads their purchases from it,
        which is faster than scanning the full ``events`` folder. Ignored without
        ``customer_ids``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, p`` (probability of label 1), in the order of the shop's customer
        ids; ids unknown to the shop or created on or after ``as_of`` are absent.
    """
    if task.oracle is None:
        raise ValueError(f"task {task.name!r} has no oracle")
    if customer_ids is None:
        return task.oracle(Path(data), as_of, settings)
    events = None
    if shop is not None:
        ev = shop.events
        buys = ev.filter(ev[c.EVENT_TYPE] == c.PURCHASE)
        events = buys.select(c.CUSTOMER_ID, c.ITEM_ID, c.TS, c.EVENT_TYPE).to_pyarrow()
    ids = [str(i) for i in customer_ids]
    return task.oracle(Path(data), as_of, settings, customer_ids=ids, events=events)


# --------------------------------------------------------------------------- fit + evaluate


def seasonal_shifts(
    scorer: GradientBoostedScorer, frames: BacktestFrames, task: BinaryTask
) -> tuple[IntensityShift, IntensityShift] | None:
    """The seasonal adjustments of a fitted scorer for the test period and for deployment.

    Measured on ``frames.seasonal`` (the lagged cutoffs, :mod:`models.seasonality`) with
    the scorer's calibrated probabilities.

    Returns
    -------
    tuple of IntensityShift, or None
        ``(test, deploy)``: from the validation season to the test season, and to the
        season that starts at the end of the data; None without lagged frames or when
        either cannot be measured.
    """
    if frames.seasonal is None or frames.seasonal_plan is None:
        return None
    dates = {k: t.date().isoformat() for k, t in frames.seasonal_plan.cutoffs.items()}
    p = {k: scorer.predict_calibrated(df[frames.features]) for k, df in frames.seasonal.items()}
    y = {k: df[LABEL].to_numpy(dtype=np.int8) for k, df in frames.seasonal.items()}
    out = []
    for target in ("test", "deploy"):
        shift = seasonal_shift(
            p["reference"],
            y["reference"],
            p[target],
            y[target],
            task.label_is_purchase,
            reference=dates["reference"],
            target=dates[target],
        )
        if shift is None:
            return None
        out.append(shift)
    log.info(
        "%s seasonal adjustment: log intensity multiplier %+.3f (test), %+.3f (deployment)",
        task.name,
        out[0].log_multiplier,
        out[1].log_multiplier,
    )
    return out[0], out[1]


@dataclass
class Evaluation:
    """Fitted scorer and everything measured on the test period."""

    scorer: GradientBoostedScorer
    baselines: dict[str, Scorer]
    metrics: dict[str, float]
    scores: dict[str, np.ndarray]
    y_test: np.ndarray
    calibration: pd.DataFrame
    n_train_used: int
    fit_seconds: float
    oracle_rows: np.ndarray | None = field(default=None, repr=False)


def sample_rows(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``df``, a seeded sample in the original order."""
    if len(df) <= max_rows:
        return df
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(df), size=max_rows, replace=False))
    return df.iloc[keep]


def calibration_check(table: pd.DataFrame, min_n: int = CALIBRATION_MIN_BIN) -> dict[str, float]:
    """Worst relative calibration error over deciles with at least ``min_n`` rows."""
    big = table[table.n >= min_n]
    return {
        "test_calibration_max_rel_error": float(big.relative_error.max()) if len(big) else np.nan,
        "test_calibration_deciles_within_10pct": float((big.relative_error <= 0.10).sum()),
        "test_calibration_deciles_within_2se": float(
            (abs(big.mean_predicted - big.observed_rate) <= 2 * big.std_error).sum()
        ),
        "test_calibration_deciles_checked": float(len(big)),
    }


def fit_evaluate(
    frames: BacktestFrames,
    task: BinaryTask,
    seed: int,
    config: BacktestConfig | None = None,
    oracle: pd.DataFrame | None = None,
) -> Evaluation:
    """Fit the scorer and baselines on ``frames`` and measure them on the test period.

    Parameters
    ----------
    config : BacktestConfig, optional
        Training-row cap and fitting threads.
    oracle : pandas.DataFrame, optional
        ``customer_id, p``: true probabilities for the test customers (demo shop).

    Returns
    -------
    Evaluation
        Metrics use the fixed names ``test_*``, ``valid_*``, ``baseline_rfm_*``,
        ``baseline_logreg_*`` and ``oracle_*``.
    """
    config = config or BacktestConfig()
    train = sample_rows(frames.train, config.max_train_rows, seed)
    X_tr, y_tr = train[frames.features], train[LABEL].to_numpy(dtype=np.int8)
    X_va, y_va = frames.xy("valid")
    X_te, y_te = frames.xy("test")

    t0 = time.perf_counter()
    scorer = task.make_scorer(seed, config.num_threads).fit(X_tr, y_tr, X_va, y_va)
    fit_seconds = time.perf_counter() - t0
    p_test = scorer.predict_calibrated(X_te)
    p_valid = scorer.calibrator_.predict(scorer.valid_raw_)  # out of sample even after a refit

    metrics: dict[str, float] = {}
    shifts = seasonal_shifts(scorer, frames, task)
    if shifts is not None:
        test_shift, deploy_shift = shifts
        table = M.calibration_table(y_te, p_test, bins=10)
        metrics.update(
            {f"{k}_unadjusted": v for k, v in calibration_check(table).items()},
        )
        metrics["test_brier_unadjusted"] = M.brier(y_te, p_test)
        metrics["seasonal_log_multiplier_test"] = test_shift.log_multiplier
        metrics["seasonal_log_multiplier_deploy"] = deploy_shift.log_multiplier
        p_test = test_shift.apply(p_test)
        scorer.seasonal_shift_ = deploy_shift
    metrics.update(M.binary_report(y_te, p_test).as_metrics("test"))
    metrics.update(M.binary_report(y_va, p_valid).as_metrics("valid"))
    metrics["train_rows"] = float(len(frames.train))
    metrics["train_rows_used"] = float(len(train))
    metrics["train_positive_rate"] = float(y_tr.mean())
    metrics["best_iteration"] = float(scorer.best_iteration_)
    metrics["fit_seconds"] = fit_seconds
    for method, b in scorer.calibration_brier_.items():
        metrics[f"calibration_brier_{method}"] = b
    table = M.calibration_table(y_te, p_test, bins=10)
    metrics.update(calibration_check(table))
    # the same rule on labels drawn from p_test itself: what a calibrated model can expect
    yardstick = M.calibration_yardstick(p_test, min_n=CALIBRATION_MIN_BIN, seed=seed)
    metrics["test_calibration_deciles_within_10pct_if_calibrated"] = yardstick.expected_bins_within
    metrics["test_calibration_all_deciles_pass_prob_if_calibrated"] = (
        yardstick.all_bins_pass_probability
    )

    scores = {"model": p_test}
    baselines: dict[str, Scorer] = {
        "rfm": RFMBaseline().fit(X_tr, y_tr),
        "logreg": LogisticBaseline().fit(X_tr, y_tr),
    }
    for name, base in baselines.items():
        p_base = base.predict_proba(X_te)
        scores[f"baseline {name}"] = p_base
        metrics.update(M.binary_report(y_te, p_base).as_metrics(f"baseline_{name}"))

    oracle_rows = None
    if oracle is not None:
        o = frames.test[[c.CUSTOMER_ID]].merge(oracle, on=c.CUSTOMER_ID, how="left")
        ok = o["p"].notna().to_numpy()
        oracle_rows = ok
        metrics["oracle_coverage"] = float(ok.mean())
        if ok.any() and len(np.unique(y_te[ok])) == 2:
            p_or = o["p"].to_numpy(dtype=np.float64)[ok]
            metrics.update(M.binary_report(y_te[ok], p_or).as_metrics("oracle"))
            metrics["test_roc_auc_oracle_rows"] = M.roc_auc(y_te[ok], p_test[ok])
            metrics["oracle_gap_roc_auc"] = (
                metrics["oracle_roc_auc"] - metrics["test_roc_auc_oracle_rows"]
            )
            # the same decile check on the true probabilities: how much of a miss is noise
            oracle_table = M.calibration_table(y_te[ok], p_or, bins=10)
            metrics.update(
                {
                    k.replace("test_", "oracle_", 1): v
                    for k, v in calibration_check(oracle_table).items()
                }
            )
            if ok.all():
                scores["oracle"] = p_or
    return Evaluation(
        scorer=scorer,
        baselines=baselines,
        metrics=metrics,
        scores=scores,
        y_test=y_te,
        calibration=table,
        n_train_used=len(train),
        fit_seconds=fit_seconds,
        oracle_rows=oracle_rows,
    )


# --------------------------------------------------------------------------- the job


def _dataset(frames: BacktestFrames, split: str, data: Path, task: BinaryTask) -> Any:
    """An MLflow dataset description (no data copied) of one backtest split."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models import infer_signature

    df = getattr(frames, split)
    cutoffs = frames.plan.train if split == "train" else (getattr(frames.plan, split),)
    cutoff_days = [t.date().isoformat() for t in cutoffs]
    desc: dict[str, Any] = {
        "data": str(Path(data).resolve()),
        "split": split,
        "cutoffs": cutoff_days,
        "horizon_days": frames.plan.horizon_days,
        "rows": len(df),
        "positive_rate": float(df[LABEL].mean()),
        "features": frames.features,
    }
    digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:8]
    sample = df[[*frames.features, LABEL]].head(50).copy()
    for col in sample.columns:
        if isinstance(sample[col].dtype, pd.CategoricalDtype):
            sample[col] = sample[col].astype(object)
    name = f"{task.name}-{split}-{'_'.join(cutoff_days)}-{len(df)}rows"
    with warnings.catch_warnings():
        # integer-column hint and "source can be interpreted in multiple ways": both benign
        warnings.simplefilter("ignore", UserWarning)
        schema = infer_signature(sample).inputs
        source = resolve_dataset_source(str(Path(data).resolve()))
    return MetaDataset(source, name, digest, schema)  # type: ignore[abstract]


def _plots(ev: Evaluation, frames: BacktestFrames, task: BinaryTask, out: Path) -> list[Path]:
    from training import plots

    X_te, _ = frames.xy("test")
    sample = X_te.sample(n=min(2000, len(X_te)), random_state=0)
    contrib = ev.scorer.contributions(sample)
    title = task.name.replace("_", " ")
    return [
        plots.gain_lift_chart(ev.y_test, ev.scores, out / "gain_lift.png", title),
        plots.calibration_curve(ev.calibration, out / "calibration.png", title),
        plots.feature_importance(
            ev.scorer.feature_importance(), out / "feature_importance.png", title
        ),
        plots.contribution_summary(contrib, sample, out / "contribution_summary.png", title),
    ]


def _champion_scorer(frames: BacktestFrames) -> Callable[[Any], float | None]:
    """``score_champion`` of :func:`training.log_run.log_training_run`: the champion's
    ROC-AUC on this run's test rows."""

    def score(champion: Any) -> float | None:
        X_te, y_te = frames.xy("test")
        p = np.asarray(champion.load().predict(X_te), dtype=np.float64)
        return M.roc_auc(y_te, p)

    return score


def run_scoring_job(
    task: BinaryTask,
    settings: Settings,
    data: Path,
    *,
    config: BacktestConfig | None = None,
    force: bool = False,
    snapshot_fn: SnapshotFn = default_snapshot,
    pit_check: bool = True,
    cache: dict[datetime, Any] | None = None,
    prepared: PreparedShop | None = None,
) -> TrainingResult:
    """Backtest, fit, evaluate, log, register and (maybe) promote one binary score.

    Parameters
    ----------
    task : BinaryTask
        :data:`CONVERSION_INTENT`, :data:`CHURN` or another binary task.
    settings : Settings
        Horizons, populations, seed and the MLflow store.
    data : Path
        The shop folder or DuckDB file. With a ``truth/`` folder inside (the demo
        shop) the oracle is measured too.
    config : BacktestConfig, optional
        Cutoff count and spacing, the training-row cap and the customer cap: a shop with
        more than ``config.max_customers`` customers is trained, checked and evaluated on
        the seeded sample of :func:`sample_customers` (params ``customers_sampled``,
        ``customers_total``).
    force : bool
        Make the new version champion regardless of metrics.
    snapshot_fn : callable
        ``(shop, as_of) -> Snapshot``; the project's builder by default.
    pit_check : bool
        Run the point-in-time check at the last training cutoff.
    cache : dict, optional
        Snapshots by cutoff, shared between jobs on the same data (and the same
        customer sample).
    prepared : PreparedShop, optional
        The opened and sampled shop from :func:`prepare_shop` (same data,
        ``max_customers`` and seed), shared between jobs; ``open_seconds`` and
        ``sample_seconds`` are then 0 in this job's metrics.

    Returns
    -------
    TrainingResult
    """
    import mlflow

    from models.pyfunc import log_scorer
    from training.log_run import log_training_run

    t0 = time.perf_counter()
    config = config or BacktestConfig()
    data = Path(data)
    shared = prepared is not None
    if prepared is None:
        prepared = prepare_shop(data, settings, config)
    elif (
        prepared.data.resolve() != data.resolve()
        or prepared.max_customers != config.max_customers
        or prepared.seed != settings.seed
    ):
        raise ValueError(
            "prepared was made for other data, max_customers or seed: "
            f"{prepared.data} / {prepared.max_customers} / {prepared.seed}"
        )
    start, end = prepared.data_range
    if prepared.profile is not None:
        require(task.name, prepared.profile, str(data))
    try:
        plan = plan_backtest(end, task.horizon_days(settings), config, data_start=start)
    except ValueError as exc:
        raise too_short(task.name, exc, str(data)) from None
    log.info("%s backtest plan: %s", task.name, plan.as_params())
    # every cutoff, the point-in-time check and the evaluation read the same sample
    sample = prepared.sample
    shop = sample.shop
    open_seconds = 0.0 if shared else prepared.open_seconds
    sample_seconds = 0.0 if shared else sample.seconds

    # the point-in-time check compares two snapshots; past config.pit_customers it runs on
    # a nested sample of that many customers instead of reusing a cutoff's snapshot
    pit_nested = sample.customers_sampled > config.pit_customers
    if cache is None:
        # hold only the snapshot the point-in-time check reuses, not every cutoff's (memory)
        cache = _KeepOnly({plan.train[-1]} if pit_check and not pit_nested else set())
    seasonal = plan_seasonal(
        plan.valid,
        plan.test,
        plan.test_end,
        plan.horizon_days,
        start,
        mode=config.seasonal_adjustment,
        lag_days=config.seasonal_lag_days,
        min_history_days=config.min_history_days,
    )
    frames = assemble(shop, task, plan, settings, snapshot_fn, cache, seasonal)
    t_pit = time.perf_counter()
    if pit_check and pit_nested:
        pit_shop = sample_customers(shop, config.pit_customers, settings.seed).shop
        check_point_in_time(pit_shop, plan.train[-1], snapshot_fn)
    elif pit_check:
        check_point_in_time(shop, plan.train[-1], snapshot_fn, reference=cache.get(plan.train[-1]))
    t_oracle = time.perf_counter()
    oracle = None
    truth = data / "truth"
    if task.oracle is not None and truth.is_dir():
        # on a sample, only the test rows' customers (the oracle is merged onto them)
        ids = frames.test[c.CUSTOMER_ID].to_numpy() if sample.sampled else None
        oracle = oracle_for(task, data, plan.test, settings, ids, shop if ids is not None else None)
    t_fit = time.perf_counter()
    ev = fit_evaluate(frames, task, settings.seed, config, oracle)
    t_log = time.perf_counter()
    ev.metrics.update(
        {
            "open_seconds": open_seconds,
            "sample_seconds": sample_seconds,
            "snapshot_seconds": frames.snapshot_seconds,
            "labels_seconds": frames.labels_seconds,
            "pit_check_seconds": t_oracle - t_pit,
            "oracle_seconds": t_fit - t_oracle,
            "evaluate_seconds": t_log - t_fit,
        }
    )

    params: dict[str, Any] = {
        **plan.as_params(),
        "data": str(data.resolve()),
        "seed": settings.seed,
        "n_features": len(frames.features),
        "step_days": config.step_days,
        "max_train_rows": config.max_train_rows,
        "num_threads": config.num_threads,
        "calibration_method": ev.scorer.calibrator_.method,
        "scorer": type(ev.scorer).__name__,
        "n_estimators_max": ev.scorer.n_estimators,
        "early_stopping_rounds": ev.scorer.early_stopping_rounds,
        "refit_on_valid": ev.scorer.refit,
        "point_in_time_check": pit_check,
        "max_customers": config.max_customers,
        "pit_customers": config.pit_customers,
        "customers_total": sample.customers_total,
        "customers_sampled": sample.customers_sampled,
        "seasonal_adjustment": config.seasonal_adjustment,
        "seasonal_cutoffs": (
            "none"
            if ev.scorer.seasonal_shift_ is None or seasonal is None
            else ",".join(t.date().isoformat() for t in seasonal.cutoffs.values())
        ),
        **{f"lgb_{k}": v for k, v in ev.scorer.lgb_params().items()},
    }

    def log_artifacts(out: Path) -> None:
        for split, context in (("train", "training"), ("valid", "validation"), ("test", "testing")):
            mlflow.log_input(_dataset(frames, split, data, task), context=context)
        used = set(frames.features)
        manifest = [dataclasses.asdict(s) for s in frames.manifest if s.name in used]
        mlflow.log_dict({"model": task.name, "features": manifest}, "feature_manifest.json")
        for p in _plots(ev, frames, task, out / "plots"):
            mlflow.log_artifact(str(p), artifact_path="plots")
        ev.calibration.to_csv(out / "calibration_test.csv", index=False)
        ev.scorer.feature_importance().rename_axis("feature").to_csv(out / "feature_importance.csv")
        M.gain_curve(ev.y_test, ev.scores["model"]).to_csv(out / "gain_curve.csv", index=False)
        threshold_curve(ev.y_test, ev.scores["model"], ev.scores.get("oracle")).to_csv(
            out / "threshold_curve.csv", index=False
        )
        for f in (
            "calibration_test.csv",
            "feature_importance.csv",
            "gain_curve.csv",
            "threshold_curve.csv",
        ):
            mlflow.log_artifact(str(out / f), artifact_path="evaluation")

    X_te, _ = frames.xy("test")
    result = log_training_run(
        task.name,
        settings,
        test_start=plan.test,
        test_end=plan.test_end,
        params=params,
        metrics=ev.metrics,
        log_model=lambda name: log_scorer(ev.scorer, X_te.head(5), name=name),
        primary_metric=PRIMARY_METRIC,
        force=force,
        started=t0,
        description=f"{task.name}: {task.description}",
        log_artifacts=log_artifacts,
        score_champion=_champion_scorer(frames),
        as_of=plan.test,
        n_train=ev.n_train_used,
        n_test=len(frames.test),
        cutoffs=plan.as_params(),
    )
    # measured once the run is closed and registered, so logged to it afterwards
    ev.metrics["log_register_seconds"] = time.perf_counter() - t_log
    mlflow.MlflowClient().log_metric(
        result.run_id, "log_register_seconds", ev.metrics["log_register_seconds"]
    )
    log.info(
        "%s: test ROC-AUC %.4f, version %d, %s (%.1fs)",
        task.name,
        ev.metrics[PRIMARY_METRIC],
        result.version,
        "champion" if result.promoted else f"challenger ({result.promotion_reason})",
        result.seconds,
    )
    return result
