"""Engines that run the snapshot queries: DuckDB in process (default) or Spark.

The snapshot builder (:mod:`features.snapshot_run`) compiles its Ibis expressions once
and hands the SQL to a :class:`FeatureBackend`; every engine-specific call of the
snapshot path lives here, so the engine is a setting (``KLANTBEELD_FEATURE_BACKEND``,
carried by :attr:`features.shop.Shop.feature_backend`), not a rewrite.

- :class:`DuckDBBackend` runs the SQL on the shop's own DuckDB connection.
- :class:`SparkBackend` copies the shop's validated, typed tables (DuckDB reads,
  validates and types the input once, at the data-contract entry) into the Spark
  session as temporary views, once per table, and runs the same queries compiled for
  Spark SQL. The session is the active one (``SparkSession.builder.getOrCreate()``), so
  ``spark-submit``, ``pyspark --master …`` or a notebook's session decides where it runs.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import shutil
import sys
import tempfile
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import pyarrow as pa

from features.shop import check_backend
from klantbeeld.errors import ConfigError

log = logging.getLogger(__name__)


class FeatureBackend(ABC):
    """The contract of an engine that computes feature snapshots.

    Attributes
    ----------
    name : str
        The setting's value (``duckdb`` or ``pyspark``); part of the compiled-query
        cache key.
    packed_sum_type : str
        Ibis type a packed count sum is cast to before its fields are shifted out
        (:class:`features.snapshot_passes._Counters`): ``uint64`` where the engine sums
        int64 into a wider type (DuckDB: HUGEINT), ``int64`` where it has no unsigned
        types and sums int64 to int64 (Spark). Packs use at most 63 bits, so both are exact.
    """

    name: str
    packed_sum_type: str

    @abstractmethod
    def compile(self, expr: ibis.Table) -> str:
        """SQL text of ``expr`` (an expression over unbound tables named by
        :meth:`table_name`) in this engine's dialect."""

    @abstractmethod
    def table_name(self, shop: Any, table: ibis.Table) -> str:
        """Name under which this engine reads ``table`` of ``shop`` (made available first)."""

    @abstractmethod
    def execute(self, shop: Any, sql: str) -> pa.Table:
        """Run ``sql`` and return its rows as Arrow (timestamps naive UTC)."""

    @contextlib.contextmanager
    def session(self, shop: Any) -> Iterator[None]:
        """Engine settings for the duration of one snapshot build (default: none)."""
        yield


# DuckDB settings for the duration of a build: results need not keep insertion order
# (every table is sorted by its keys afterwards), which lets DuckDB collect results and
# build intermediates in parallel. (The progress bar is switched off once, in open_shop:
# switching it back on fails in Jupyter kernels without ipywidgets.)
_DUCKDB_SETTINGS = {"preserve_insertion_order": "false"}


class DuckDBBackend(FeatureBackend):
    """The queries run on the shop's own DuckDB connection (no copy)."""

    name = "duckdb"
    packed_sum_type = "uint64"

    def compile(self, expr: ibis.Table) -> str:
        return str(ibis.to_sql(expr, dialect="duckdb"))

    def table_name(self, shop: Any, table: ibis.Table) -> str:
        return str(table.get_name())

    def execute(self, shop: Any, sql: str) -> pa.Table:
        # ibis 12's Backend.sql() calls DuckDB's removed fetch_arrow_table(); go direct
        return shop.con.con.sql(sql).to_arrow_table()

    @contextlib.contextmanager
    def session(self, shop: Any) -> Iterator[None]:
        """Apply :data:`_DUCKDB_SETTINGS` on the shop's connection, restore afterwards."""
        raw = shop.con.con
        old = {
            k: raw.execute("SELECT current_setting(?)", [k]).fetchone()[0] for k in _DUCKDB_SETTINGS
        }
        for k, v in _DUCKDB_SETTINGS.items():
            raw.execute(f"SET {k} = {v}")
        try:
            yield
        finally:
            for k, v in old.items():
                raw.execute(f"SET {k} = {str(v).lower()}")


class SparkBackend(FeatureBackend):
    """The queries run as Spark SQL on the active Spark session.

    Parameters
    ----------
    session : pyspark.sql.SparkSession, optional
        Default: ``SparkSession.builder.getOrCreate()`` at first use (the session a
        ``spark-submit`` job or notebook already has; a local one otherwise). Its
        ``spark.sql.session.timeZone`` is set to UTC (the data contract's zone).
    copy : {"auto", "parquet", "arrow"}, default "auto"
        How tables reach Spark: ``parquet`` (files in a local temporary folder, which
        only a local master can read), ``arrow`` (through the driver), ``auto``
        (``parquet`` on a local master, else ``arrow``).

    Notes
    -----
    Each table of a shop is copied to Spark once, as a temporary view named
    ``kb<n>_<table>`` (local master: Parquet files DuckDB writes to a temporary folder;
    otherwise Arrow batches through the driver); cut or sampled shops (``Shop.until``,
    training samples) are further tables and are copied when first read.
    """

    name = "pyspark"
    packed_sum_type = "int64"

    def __init__(self, session: Any = None, copy: str = "auto") -> None:
        if copy not in ("auto", "parquet", "arrow"):
            raise ValueError(f"copy must be auto, parquet or arrow, got {copy!r}")
        self._session = session
        self._copy_mode = copy
        self._ibis: Any = None
        self._views: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()
        self._folders: weakref.WeakKeyDictionary[Any, Path] = weakref.WeakKeyDictionary()
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    @property
    def ibis_backend(self) -> Any:
        """The Ibis PySpark backend on the session (connected at first use)."""
        if self._ibis is None:
            try:
                import pyspark  # noqa: F401
            except ImportError as exc:
                raise ConfigError(
                    "KLANTBEELD_FEATURE_BACKEND=pyspark needs pyspark (pip install "
                    "'klantbeeld[spark]') and a Java runtime"
                ) from exc
            session = self._session or active_session()
            self._session = session
            self._ibis = ibis.pyspark.connect(session)  # sets the session time zone to UTC
        return self._ibis

    @property
    def spark(self) -> Any:
        """The Spark session."""
        self.ibis_backend  # noqa: B018 - connects on first use
        return self._session

    def compile(self, expr: ibis.Table) -> str:
        return str(self.ibis_backend.compile(expr))

    def table_name(self, shop: Any, table: ibis.Table) -> str:
        name = str(table.get_name())
        with self._lock:
            views = self._views.setdefault(shop.con, {})
            if name not in views:
                view = f"kb{next(self._numbers)}_{name}"
                self._copy(shop, table, view)
                views[name] = view
            return views[name]

    def _copy(self, shop: Any, table: ibis.Table, view: str) -> None:
        """Make ``table`` (typed, on the shop's DuckDB) readable in Spark as ``view``.

        Local master: DuckDB writes it as Parquet into a folder of its own (removed when
        the shop's connection goes) and Spark reads the files. Cluster master: the rows
        travel through the driver as Arrow. Timestamps arrive as Spark ``TIMESTAMP``
        holding the same UTC instants either way.
        """
        local = str(self.spark.sparkContext.master).startswith("local")
        if self._copy_mode != "auto":
            local = self._copy_mode == "parquet"
        if local:
            utc = {
                col: table[col].cast(dt.Timestamp(timezone="UTC"))
                for col, kind in table.schema().items()
                if kind.is_timestamp()
            }
            sql = ibis.to_sql(table.mutate(**utc) if utc else table, dialect="duckdb")
            path = self._staging(shop) / f"{view}.parquet"
            shop.con.con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
            self.spark.read.parquet(str(path)).createOrReplaceTempView(view)
        else:
            rows = shop.con.con.sql(ibis.to_sql(table, dialect="duckdb")).to_arrow_table()
            self.spark.createDataFrame(rows).createOrReplaceTempView(view)
        log.info("copied %s to Spark view %s (%s)", table.get_name(), view,
                 "Parquet" if local else "Arrow")  # fmt: skip

    def _staging(self, shop: Any) -> Path:
        """The shop's Parquet folder for local Spark (made once, removed with the shop)."""
        folder = self._folders.get(shop.con)
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="klantbeeld-spark-"))
            weakref.finalize(shop.con, shutil.rmtree, folder, True)
            self._folders[shop.con] = folder
        return folder

    def execute(self, shop: Any, sql: str) -> pa.Table:
        return _naive_utc(self.spark.sql(sql).toArrow())


def active_session() -> Any:
    """The active Spark session, or a new one from the environment's Spark settings.

    When this creates the session and ``PYSPARK_PYTHON`` is unset, Python workers (UDFs
    such as ``mlflow.pyfunc.spark_udf``) run this process's interpreter, so they see
    the same packages as the driver.
    """
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        session = SparkSession.builder.getOrCreate()
    return session


def local_session(
    threads: int = 1, *, driver_memory: str | None = None, app_name: str = "klantbeeld"
) -> Any:
    """A local Spark session (``local[threads]``) tuned for one machine, or the active one.

    Parameters
    ----------
    threads : int, default 1
        Executor threads; shuffles use ``2 * threads`` partitions (Spark's default of
        200 costs seconds per query on small data).
    driver_memory : str, optional
        ``spark.driver.memory`` (e.g. ``"8g"``); only takes effect when the JVM starts here.
    app_name : str
        Spark application name.

    Returns
    -------
    pyspark.sql.SparkSession
        With the web UI and console progress bars off, log level ERROR, and (unless
        ``PYSPARK_PYTHON`` is set) Python workers on this interpreter.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(f"local[{int(threads)}]")
        .appName(app_name)
        .config("spark.sql.shuffle.partitions", str(2 * int(threads)))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if driver_memory:
        builder = builder.config("spark.driver.memory", driver_memory)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _naive_utc(table: pa.Table) -> pa.Table:
    """``table`` with every time-zone-aware timestamp column as naive UTC (same instants)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            naive = (
                table.column(i)
                .cast(pa.timestamp(f.type.unit, tz="UTC"))
                .cast(pa.timestamp(f.type.unit))
            )
            table = table.set_column(i, f.name, naive)
    return table


@functools.cache
def get_backend(name: str) -> FeatureBackend:
    """The process-wide backend for setting value ``name`` (``duckdb`` or ``pyspark``).

    Raises
    ------
    ConfigError
        ``name`` is not one of :data:`features.shop.SUPPORTED_BACKENDS`.
    """
    check_backend(name)
    return SparkBackend() if name == "pyspark" else DuckDBBackend()


def backend_of(shop: Any) -> FeatureBackend:
    """The backend that computes ``shop``'s snapshots (``shop.feature_backend``)."""
    return get_backend(getattr(shop, "feature_backend", "duckdb"))
