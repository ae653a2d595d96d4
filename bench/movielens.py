"""MovieLens-100k with a temporal split: popularity, ALS, EASE and the final ranking.

Data: ``/work/shared/data/fetch-public-data.sh`` (``~/.cache/klantbeeld/public/ml-100k``).
Every rating is one interaction; already-rated movies are never recommended. T is 30 days
before the last rating; the test set is every rating in (T, T + 30d]; the re-ranker is
trained on (T - 30d, T] with the sources fitted before T - 30d, as in the shop job.

Usage: ``nice .venv/bin/python -m bench.movielens [--path FILE]``
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.settings import Settings
from models.recommender.interactions import IdMap
from training.recommender_job import evaluate_split

DEFAULT = Path.home() / ".cache/klantbeeld/public/ml-100k/ml-100k.inter"
RATING = "rating"


def load(path: Path) -> pd.DataFrame:
    """Ratings as events ``customer_id, item_id, event_type='rating', ts``."""
    df = pd.read_csv(path, sep="\t")
    df.columns = [col.split(":")[0] for col in df.columns]
    return pd.DataFrame(
        {
            c.CUSTOMER_ID: df["user_id"].astype(str),
            c.ITEM_ID: df["item_id"].astype(str),
            c.EVENT_TYPE: RATING,
            c.TS: pd.to_datetime(df["timestamp"], unit="s"),
        }
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark and return its metrics (also printed as JSON)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--path", type=Path, default=DEFAULT)
    ap.add_argument("--test-days", type=int, default=30)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    events = load(args.path)
    ids = IdMap(
        pd.Index(np.sort(events[c.CUSTOMER_ID].unique())),
        pd.Index(np.sort(events[c.ITEM_ID].unique())),
    )
    last = events[c.TS].max()
    as_of = (last - timedelta(days=args.test_days)).normalize().to_pydatetime()
    settings = Settings(
        recommender_event_weights={RATING: 1.0},
        recommender_target_events=[RATING],
        recommender_test_days=args.test_days,
        recommender_als_factors=64,
        recommender_als_regularization=0.05,
        recommender_als_alpha=2.0,
        recommender_knn_k=100,
        seed=42,
    )
    t0 = time.perf_counter()
    metrics, _, kind = evaluate_split(
        events,
        ids,
        None,
        as_of,
        settings,
        sources=("als", "item_knn", "ease", "popular"),
        overrides={"exclude_history": True, "ease_l2": 200.0, "n_per_source": 100},
    )
    metrics["seconds"] = time.perf_counter() - t0
    metrics["ranker_is_lambdarank"] = float(kind == "lambdarank")
    keys = [k for k in sorted(metrics) if "at_10" in k or "coverage" in k or k in ("seconds",)]
    print(
        json.dumps({"as_of": str(as_of), "ranker": kind} | {k: metrics[k] for k in keys}, indent=1)
    )
    return metrics


if __name__ == "__main__":
    main()
