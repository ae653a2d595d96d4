"""Benchmark: train conversion intent and churn on the 1M-customer demo shop.

Times each training job end to end (snapshots + labels at every cutoff, point-in-time
check, LightGBM fit with early stopping, calibration, the RFM and logistic baselines on the
same test period, oracle, plots, MLflow logging and registration) and prints the breakdown
and the quality figures. Target (issue 4): both models in <= 3 min on this 2-core machine.

    nice .venv/bin/python bench/train.py --customers 1000000 --data /tmp/kb_demo_1m

The shop is opened, validated and sampled (``BacktestConfig.max_customers``, default 100,000)
once for both models (:func:`training.scoring_job.prepare_shop`), which are then trained by
:func:`training.jobs.train_binary_models`, the code path of ``klantbeeld train all``; the
preparation is part of the total. The demo shop is generated first when ``--data`` does not
hold one (not timed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# OpenMP threads that spin while waiting slow LightGBM badly on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if __name__ == "__main__" and not sys.flags.safe_path:
    # bench/features.py would shadow the `features` package: rerun without the script's
    # folder on sys.path (python -P).
    os.execv(sys.executable, [sys.executable, "-P", *sys.argv])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=Path("/tmp/kb_demo_1m"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-train", type=int, default=2, help="stacked training cutoffs")
    ap.add_argument("--max-train-rows", type=int, default=500_000)
    ap.add_argument("--threads", type=int, default=2, help="LightGBM threads")
    ap.add_argument(
        "--max-customers",
        type=int,
        default=None,
        help="customer sample cap of the training job (default: BacktestConfig's)",
    )
    ap.add_argument("--models", nargs="+", default=["conversion_intent", "churn"])
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import mlflow

    from features.demo_shop import generate_demo_shop, is_demo_shop
    from klantbeeld.settings import Settings
    from training.backtest import BacktestConfig
    from training.jobs import train_binary_models
    from training.scoring_job import prepare_shop

    if not is_demo_shop(args.data):
        t = time.perf_counter()
        summary = generate_demo_shop(args.data, n_customers=args.customers, seed=args.seed)
        logging.info("generated %s in %.0fs", summary, time.perf_counter() - t)

    cap = {} if args.max_customers is None else {"max_customers": args.max_customers}
    config = BacktestConfig(
        n_train=args.n_train, max_train_rows=args.max_train_rows, num_threads=args.threads, **cap
    )
    home = Path(tempfile.mkdtemp(prefix="kb_bench_train_"))
    settings = Settings(home=home, seed=args.seed)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    # open, validate and sample the shop once for every model (timed apart here), then
    # train them the way `klantbeeld train all` does
    prepared = prepare_shop(args.data, settings, config)
    prepare_seconds = time.perf_counter() - t_all
    results = train_binary_models(
        settings, args.data, args.models, config=config, prepared=prepared
    )
    for name, r in results.items():
        m = r.metrics
        rows.append(
            {
                "model": name,
                "seconds_total": round(r.seconds, 1),
                "seconds_by_phase": {
                    phase: round(m[f"{phase}_seconds"], 1)
                    for phase in (
                        "open",  # (0 here: shared, see seconds_prepare_shared)
                        "sample",  # (0 here: shared)
                        "snapshot",  # snapshots + labels + joins at every cutoff
                        "labels",  # (the labels part of it)
                        "pit_check",  # truncated-shop snapshot + comparison
                        "oracle",
                        "evaluate",  # LightGBM fit, calibration, baselines, metrics
                        "fit",  # (the LightGBM part of it)
                        "log_register",  # plots, MLflow logging, registry
                    )
                    if f"{phase}_seconds" in m
                },
                "customers_sampled": int(mlflow.get_run(r.run_id).data.params["customers_sampled"]),
                "train_rows": int(m["train_rows"]),
                "train_rows_used": int(m["train_rows_used"]),
                "test_rows": int(m["test_n"]),
                "best_iteration": int(m["best_iteration"]),
                **{
                    k: round(m[k], 4)
                    for k in (
                        "test_roc_auc",
                        "oracle_roc_auc",
                        "baseline_rfm_roc_auc",
                        "baseline_logreg_roc_auc",
                        "test_brier",
                        "test_lift_at_10pct",
                        "test_audience_share_keep_95pct",
                        "oracle_audience_share_keep_95pct",
                        "test_calibration_max_rel_error",
                    )
                    if k in m
                },
            }
        )
    total = time.perf_counter() - t_all
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    events = _count_events(args.data)
    result = {
        "customers": args.customers,
        "events": events,
        "data": str(args.data),
        "seconds_total_all_models": round(total, 1),
        "seconds_prepare_shared": {
            "open": round(prepared.open_seconds, 1),  # open + validate, time range
            "sample": round(prepared.sample.seconds, 1),  # draw + materialise the sample
            "total": round(prepare_seconds, 1),
        },
        "target_seconds": 180,
        "peak_rss_gb": round(peak_gb, 2),
        "config": {"n_train": args.n_train, "max_train_rows": args.max_train_rows,
                   "threads": args.threads, "max_customers": config.max_customers},
        "models": rows,
    }  # fmt: skip
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0


def _count_events(data: Path) -> int:
    import duckdb

    parts = str(data / "events" / "*.parquet").replace("'", "''")
    rows = duckdb.execute(f"SELECT count(*) FROM read_parquet('{parts}')").fetchall()
    return int(rows[0][0])


if __name__ == "__main__":
    raise SystemExit(main())
