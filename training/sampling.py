"""The shop a training job reads: opened once, cut at ``train_as_of``, sampled by customer.

:func:`prepare_shop` opens a shop, finds its time range and draws a seeded customer sample
(:func:`sample_customers`) that every later step of a job reads; :class:`PreparedShop`
shares that work between the jobs that train on the same data.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from features import contract as c
from klantbeeld.settings import Settings
from training.backtest import BacktestConfig
from training.requirements import DataProfile
from training.window import training_window

log = logging.getLogger(__name__)


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
