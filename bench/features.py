"""Benchmark: point-in-time feature snapshot vs a straightforward pandas implementation.

Usage::

    python bench/features.py --customers 1000000 [--data DIR] [--as-of YYYY-MM-DD]

Generates (or reuses) a shop in ``--data`` — with :func:`features.demo_shop.
generate_demo_shop` when available, else with the quick numpy generator below
(``--generator quick`` forces it) — then, in one run:

1. opens the shop (validation), builds the customer-level table alone
   (:func:`features.snapshot.customer_features`, the headline figure: open + build, end
   to end from the Parquet files), then the full three-table snapshot, timing each step;
2. builds the same customer table on a local Spark session (the ``pyspark`` feature
   backend, :mod:`features.backend`; ``local[threads]``), timing the first build (which
   copies the validated tables into Spark) and a second one (tables already there), and
   checks it equals the DuckDB table (``--skip-spark`` leaves it out; needs pyspark and
   Java);
3. computes the same customer-level features with ``bench/pandas_reference.py``;
4. checks that both agree on every shared column (``np.allclose``, NaN == NaN; exact
   equality for the lifecycle stage) and fails loudly if not;
5. prints events/s, peak RSS per phase and the speed ratios (Spark and pandas against
   DuckDB, all measured in this run).

Targets (ARCHITECTURE §7): >= 5M events/s end to end, >= 5x the pandas implementation.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python bench/features.py` from a fresh checkout
    sys.path.insert(0, str(ROOT))

from bench.pandas_reference import customer_features_pandas  # noqa: E402
from features import contract as c  # noqa: E402
from features.shop import open_shop  # noqa: E402
from features.snapshot import build_snapshot, customer_features, write_snapshot  # noqa: E402

QUICK_END = datetime(2026, 11, 1)
CATEGORIES = ("kitchen", "baking", "home decoration", "toys", "gifts", "personal care")


# --------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Sample the resident set size every ``interval`` seconds; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def timed(fn: Callable[[], Any]) -> tuple[Any, float, int, float]:
    """Run ``fn``; return its result, wall seconds, peak RSS bytes and CPU seconds.

    CPU seconds (user + system, all threads of this process) are reported next to wall
    time because the benchmark machine is shared: under contention wall time says more
    about the neighbours than about the code.
    """
    gc.collect()
    with PeakRSS() as mem:
        c0 = time.process_time()
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
    return result, seconds, mem.peak, cpu


# --------------------------------------------------------------------------- quick shop


def generate_quick_shop(
    out: Path, n_customers: int, seed: int = 42, end: datetime = QUICK_END, days: int = 730
) -> int:
    """Write a synthetic shop (~20 events per customer) clustered by customer_id.

    Customers, items and events are drawn with numpy; events are written in Parquet
    parts of 100k customers each, sorted by (customer_id, ts), all timestamps whole
    seconds, all money whole cents. Returns the number of events written.
    """
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "events").mkdir(exist_ok=True)
    start = end - timedelta(days=days)
    span_s = int((end - start).total_seconds())

    n_items = 2000
    item_ids = np.array([f"i{i:05d}" for i in range(n_items)], dtype=object)
    cat_idx = rng.integers(0, len(CATEGORIES), n_items)
    price = np.round(rng.gamma(2.0, 8.0, n_items) + 1.0, 2)
    repurchasable = rng.random(n_items) < 0.4
    pq.write_table(
        pa.table(
            {
                c.ITEM_ID: item_ids,
                c.TITLE: [f"item {i}" for i in range(n_items)],
                c.CATEGORY: np.array(CATEGORIES, dtype=object)[cat_idx],
                c.PRICE: price,
                c.REPURCHASABLE: repurchasable,
                c.DURABLE: ~repurchasable,
            }
        ),
        out / "items.parquet",
    )
    pop = rng.zipf(1.3, size=10 * n_items) % n_items  # skewed item popularity pool

    ids = np.array([f"c{i:08d}" for i in range(n_customers)], dtype=object)
    created_s = rng.integers(0, span_s - 86_400, n_customers)
    birth = np.datetime64("1950-01-01") + rng.integers(0, 365 * 55, n_customers).astype(
        "timedelta64[D]"
    )
    birth_mask = rng.random(n_customers) < 0.3
    pq.write_table(
        pa.table(
            {
                c.CUSTOMER_ID: ids,
                c.CREATED_AT: pa.array(
                    np.datetime64(start, "s") + created_s.astype("timedelta64[s]"),
                    pa.timestamp("us"),
                ),
                c.BIRTH_DATE: pa.array(birth, pa.date32(), mask=birth_mask),
                c.CONSENT_EMAIL: rng.random(n_customers) < 0.7,
            }
        ),
        out / "customers.parquet",
    )

    types = np.array(
        [
            c.PAGE_VIEW,
            c.PRODUCT_VIEW,
            c.ADD_TO_CART,
            c.REMOVE_FROM_CART,
            c.PURCHASE,
            c.RETURN,
            c.EMAIL_OPEN,
            c.EMAIL_CLICK,
        ],
        dtype=object,
    )
    in_session_p = np.array([0.22, 0.45, 0.18, 0.03, 0.12])
    channels = np.array(["web", "app", "email"], dtype=object)
    n_events = 0
    chunk = 100_000
    for part, lo in enumerate(range(0, n_customers, chunk)):
        hi = min(lo + chunk, n_customers)
        m = hi - lo
        activity = rng.gamma(1.2, 1.0 / 1.2, m)
        n_sess = rng.poisson(3.3 * activity)
        cust_of_sess = np.repeat(np.arange(m), n_sess)
        ns = cust_of_sess.size
        life = span_s - created_s[lo:hi][cust_of_sess]
        sess_start = created_s[lo:hi][cust_of_sess] + (rng.random(ns) * life).astype(np.int64)
        sess_channel = (rng.random(ns) < 0.4).astype(np.int64)  # 0 web, 1 app
        n_in = 1 + rng.poisson(4.0, ns)
        sess_of_ev = np.repeat(np.arange(ns), n_in)
        ne = sess_of_ev.size
        first = np.r_[True, sess_of_ev[1:] != sess_of_ev[:-1]]
        et = rng.choice(np.arange(5), size=ne, p=in_session_p)
        et[first] = 0
        offs = rng.integers(10, 300, ne)
        offs[first] = 0
        csum = np.cumsum(offs)
        sess_base = np.repeat(csum[first] - offs[first], n_in)
        ts = np.minimum(sess_start[sess_of_ev] + (csum - sess_base), span_s - 1)
        item = pop[rng.integers(0, pop.size, ne)]
        has_item = et != 0
        qty = rng.integers(1, 3, ne).astype("float64")
        value = np.where(et == 4, np.round(price[item] * qty, 2), np.nan)
        cust_ev = cust_of_sess[sess_of_ev]
        sess_global = sess_of_ev + part * 10_000_000

        # returns: 6% of purchase lines come back 10 days later
        ret = np.flatnonzero((et == 4) & (rng.random(ne) < 0.06))
        ret = ret[ts[ret] + 864_000 < span_s]
        # email opens/clicks
        n_mail = rng.poisson(1.8 * activity)
        cust_mail = np.repeat(np.arange(m), n_mail)
        nm = cust_mail.size
        mail_ts = created_s[lo:hi][cust_mail] + (
            rng.random(nm) * (span_s - created_s[lo:hi][cust_mail])
        ).astype(np.int64)
        mail_type = np.where(rng.random(nm) < 0.3, 7, 6)

        cust_all = np.concatenate([cust_ev, cust_ev[ret], cust_mail])
        ts_all = np.concatenate([ts, ts[ret] + 864_000, mail_ts])
        type_all = np.concatenate([et, np.full(ret.size, 5), mail_type])
        item_all = np.concatenate([item, item[ret], np.zeros(nm, np.int64)])
        item_mask = np.concatenate([~has_item, np.zeros(ret.size, bool), np.ones(nm, bool)])
        value_all = np.concatenate([value, value[ret], np.full(nm, np.nan)])
        qty_all = np.concatenate([np.where(has_item, qty, np.nan), qty[ret], np.full(nm, np.nan)])
        chan_all = np.concatenate(
            [sess_channel[sess_of_ev], np.zeros(ret.size, np.int64), np.full(nm, 2)]
        )
        chan_mask = np.concatenate(
            [np.zeros(ne, bool), np.ones(ret.size, bool), np.zeros(nm, bool)]
        )
        sess_all = np.concatenate([sess_global, np.zeros(ret.size + nm, np.int64)])
        sess_mask = np.concatenate([np.zeros(ne, bool), np.ones(ret.size + nm, bool)])
        is_order = type_all == 4
        order_all = np.concatenate([sess_global, sess_global[ret], np.zeros(nm, np.int64)])
        order_mask = ~np.concatenate([is_order[:ne], np.ones(ret.size, bool), np.zeros(nm, bool)])

        order = np.lexsort((ts_all, cust_all))
        k = order.size
        sess_str = pa.array(np.char.add("s", sess_all[order].astype("U12")), mask=sess_mask[order])
        order_str = pa.array(
            np.char.add("o", order_all[order].astype("U12")), mask=order_mask[order]
        )
        table = pa.table(
            {
                c.CUSTOMER_ID: pa.array(ids[lo:hi][cust_all[order]], pa.string()),
                c.TS: pa.array(
                    np.datetime64(start, "s") + ts_all[order].astype("timedelta64[s]"),
                    pa.timestamp("us"),
                ),
                c.EVENT_TYPE: pa.array(types[type_all[order]], pa.string()),
                c.ITEM_ID: pa.array(item_ids[item_all[order]], pa.string(), mask=item_mask[order]),
                c.QUANTITY: pa.array(qty_all[order], pa.float64(), from_pandas=True),
                c.VALUE: pa.array(value_all[order], pa.float64(), from_pandas=True),
                c.CHANNEL: pa.array(channels[chan_all[order]], pa.string(), mask=chan_mask[order]),
                c.SESSION_ID: sess_str,
                c.ORDER_ID: order_str,
            }
        )
        pq.write_table(table, out / "events" / f"part-{part:05d}.parquet", row_group_size=1 << 20)
        n_events += k
    (out / "quick_shop.json").write_text(
        json.dumps({"customers": n_customers, "events": n_events, "seed": seed, "end": str(end)})
    )
    return n_events


def _ensure_shop(data: Path, n_customers: int, generator: str, seed: int) -> tuple[datetime, str]:
    """Create the shop unless ``data`` already holds one; return (end of data, generator)."""
    if generator in ("auto", "demo"):
        try:
            from features.demo_shop import generate_demo_shop
        except ImportError:
            if generator == "demo":
                raise
            generator = "quick"
        else:
            generator = "demo"
    marker = data / ("quick_shop.json" if generator == "quick" else "demo_shop.done")
    if marker.exists():
        print(f"reusing shop in {data}")
    else:
        t0 = time.perf_counter()
        if generator == "quick":
            n = generate_quick_shop(data, n_customers, seed=seed)
            print(f"generated quick shop: {n:,} events in {time.perf_counter() - t0:.0f}s")
        else:
            generate_demo_shop(data, n_customers=n_customers, seed=seed)
            marker.write_text("ok\n")
            print(f"generated demo shop in {time.perf_counter() - t0:.0f}s")
    return QUICK_END, generator


# --------------------------------------------------------------------------- comparison


def compare(ours: pd.DataFrame, ref: pd.DataFrame) -> list[str]:
    """Column names on which the two customer tables disagree (empty when they agree)."""
    bad: list[str] = []
    if list(ours[c.CUSTOMER_ID]) != list(ref[c.CUSTOMER_ID]):
        return [c.CUSTOMER_ID]
    missing = [col for col in ours.columns if col not in ref.columns]
    if missing:
        bad += [f"{m} (missing in reference)" for m in missing]
    for col in ours.columns:
        if col == c.CUSTOMER_ID or col in missing:
            continue
        a, b = ours[col], ref[col]
        if isinstance(a.dtype, pd.CategoricalDtype):
            if not (a.astype(str).to_numpy() == b.astype(str).to_numpy()).all():
                bad.append(col)
            continue
        x = a.to_numpy(dtype="float64")
        y = b.to_numpy(dtype="float64")
        if not np.allclose(x, y, rtol=1e-9, atol=1e-6, equal_nan=True):
            diff = np.flatnonzero(~np.isclose(x, y, rtol=1e-9, atol=1e-6, equal_nan=True))
            i = diff[0]
            bad.append(
                f"{col} ({diff.size} rows, e.g. {ours[c.CUSTOMER_ID].iloc[i]}: {x[i]} vs {y[i]})"
            )
    return bad


def run_spark(
    shop: Any, as_of: datetime, duck: pd.DataFrame, t_duck: float, n_events: int, args: Any
) -> int:
    """Time the customer table on a local Spark session; check it equals ``duck``.

    Prints wall seconds and events/s of the session start, the first build (copy of the
    validated tables into Spark + queries) and a second build (queries only), and the
    DuckDB / Spark ratio. CPU time is not shown: Spark works in its JVM, outside this
    process's counters. Returns 1 when the tables differ.
    """
    from features.backend import local_session

    threads = args.threads or os.cpu_count() or 1

    def start() -> Any:
        return local_session(threads, driver_memory=args.spark_memory, app_name="kb-bench")

    _, t_start, _, _ = timed(start)
    on_spark = dataclasses.replace(shop, feature_backend="pyspark")  # same validated tables
    first, t_first, _, _ = timed(lambda: customer_features(on_spark, as_of))
    second, t_second, _, _ = timed(lambda: customer_features(on_spark, as_of))

    def line(name: str, wall: float) -> None:
        print(f"{name:34s} wall {wall:7.2f} s ({n_events / wall / 1e6:5.2f} M events/s)")

    line(f"local Spark start (local[{threads}])", t_start)
    line("Spark customer table, first", t_first)
    line("Spark customer table, warm", t_second)
    bad = compare(duck, first)
    if bad or not first.equals(second):
        print("MISMATCH between DuckDB and Spark customer tables:\n  " + "\n  ".join(bad))
        return 1
    print(
        f"Spark equals DuckDB on all {duck.shape[1] - 1} customer-level columns; DuckDB is "
        f"{t_first / t_duck:5.2f}x faster than Spark's first build, {t_second / t_duck:5.2f}x "
        "than its warm build (wall)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=None, help="shop folder (created if absent)")
    parser.add_argument("--as-of", default=None, help="snapshot date; default end - 30 days")
    parser.add_argument("--generator", choices=("auto", "demo", "quick"), default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the snapshot here")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--skip-spark", action="store_true", help="leave out local Spark")
    parser.add_argument(
        "--spark-max-events",
        type=int,
        default=30_000_000,
        help="skip local Spark above this many events (the tables are copied via the driver)",
    )
    parser.add_argument("--spark-memory", default="8g", help="Spark driver memory (local mode)")
    parser.add_argument(
        "--pandas-max-events",
        type=int,
        default=30_000_000,
        help="skip the pandas reference above this many events (it needs ~0.5 GB per 1M)",
    )
    args = parser.parse_args(argv)

    data = args.data or ROOT / "var" / "bench" / f"shop-{args.generator}-{args.customers}"
    end, generator = _ensure_shop(data, args.customers, args.generator, args.seed)
    as_of = datetime.fromisoformat(args.as_of) if args.as_of else end - timedelta(days=30)

    load_before = os.getloadavg()
    shop, t_open, m_open, c_open = timed(lambda: open_shop(data, threads=args.threads, now=end))
    n_events = shop.report.row_counts[c.EVENTS]
    cust, t_cust, m_cust, c_cust = timed(lambda: customer_features(shop, as_of))
    snap, t_build, m_build, c_build = timed(lambda: build_snapshot(shop, as_of))
    if not cust.equals(snap.customer):
        print("MISMATCH: customer_features differs from build_snapshot(...).customer")
        return 1
    t_write = c_write = 0.0
    if args.out is not None:
        _, t_write, _, c_write = timed(lambda: write_snapshot(snap, args.out))
    n_before = int(shop.events.filter(shop.events[c.TS] < as_of).count().execute())

    print(f"shop: {data} ({generator}), as_of {as_of:%Y-%m-%d}")
    print(
        f"  customers {shop.report.row_counts[c.CUSTOMERS]:,}, events {n_events:,} "
        f"({n_before:,} before T)"
    )
    print(
        f"  snapshot: {len(snap.customer):,} customers x {snap.customer.shape[1] - 1} features; "
        f"{len(snap.customer_category):,} customer-category, "
        f"{len(snap.customer_item):,} customer-item rows"
    )
    cores = os.cpu_count() or 1
    print(
        f"  load average before: {load_before[0]:.2f} (1 min) {load_before[1]:.2f} (5 min) "
        f"on {cores} cores; events/s count all {n_events:,} events"
    )

    def line(name: str, wall: float, cpu: float, mem: int | None = None) -> None:
        rss = f"  peak RSS {mem / 2**30:5.2f} GiB" if mem is not None else ""
        print(
            f"{name:34s} wall {wall:7.2f} s ({n_events / wall / 1e6:5.2f} M events/s)  "
            f"cpu {cpu:7.2f} s ({n_events / (cpu / cores) / 1e6:5.2f} M events/s "
            f"per {cores} cores){rss}"
        )

    line("open_shop (validation)", t_open, c_open, m_open)
    line("customer table", t_cust, c_cust, m_cust)
    cust_e2e, c_cust_e2e = t_open + t_cust, c_open + c_cust
    line("customer table end to end", cust_e2e, c_cust_e2e)
    line("build_snapshot (3 tables)", t_build, c_build, m_build)
    if args.out is not None:
        line("write_snapshot", t_write, c_write)
    e2e, c_e2e = t_open + t_build + t_write, c_open + c_build + c_write
    line("3 tables end to end", e2e, c_e2e)
    if not args.skip_spark:
        if n_events > args.spark_max_events:
            print(
                f"local Spark SKIPPED: {n_events:,} events > --spark-max-events "
                f"{args.spark_max_events:,}"
            )
        elif run_spark(shop, as_of, cust, t_cust, n_events, args) != 0:
            return 1
    if not args.skip_pandas and n_events > args.pandas_max_events:
        print(
            f"pandas reference SKIPPED: {n_events:,} events > --pandas-max-events "
            f"{args.pandas_max_events:,} (it would need ~{n_events / 2e6:.0f} GB); "
            "rerun with fewer --customers or --generator quick for the comparison"
        )
        return 0
    if args.skip_pandas:
        return 0

    ref, t_pd, m_pd, c_pd = timed(lambda: customer_features_pandas(data, as_of))
    line("pandas reference", t_pd, c_pd, m_pd)
    bad = compare(cust, ref)
    if bad:
        print("MISMATCH between snapshot and pandas reference:\n  " + "\n  ".join(bad))
        return 1
    print(f"values agree on all {cust.shape[1] - 1} customer-level columns")
    print(
        f"speed-up vs pandas, customer table: build {t_pd / t_cust:5.2f}x wall, "
        f"{c_pd / c_cust:5.2f}x cpu; end to end {t_pd / cust_e2e:5.2f}x wall, "
        f"{c_pd / c_cust_e2e:5.2f}x cpu"
    )
    print(
        f"speed-up vs pandas, all 3 tables: build {t_pd / t_build:5.2f}x wall, "
        f"{c_pd / c_build:5.2f}x cpu; end to end {t_pd / e2e:5.2f}x wall, {c_pd / c_e2e:5.2f}x cpu"
    )
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} (1 min) {load_after[1]:.2f} (5 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
