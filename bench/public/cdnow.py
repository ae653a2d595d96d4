"""CDNOW: BG/NBD against klantbeeld on the protocol of Fader, Hardie & Lee (2005).

Data: ``/work/shared/data/fetch-public-data.sh DEST`` (``DEST/cdnow/CDNOW_{sample,master}.txt``;
never committed). The cohort made its first purchase in Q1 1997. Calibration: weeks 1–39
(1997-01-01 to 1997-09-30); holdout: weeks 40–78 (1997-10-01 to 1998-06-30). A transaction
is a distinct purchase day (same-day purchases count once); repeat transactions are all but
the first.

- **BG/NBD** (``models.bgnbd``): fitted by maximum likelihood on the calibration summaries
  (x, t_x, T in weeks of days / 7, T measured to 1997-09-30 as in Hardie's data);
  prediction E[Y(39 weeks) | x, t_x, T].
- **klantbeeld**: CDNOW converted into the data contract (one placeholder item, a purchase
  event per CDNOW line with quantity and value, an order per customer-day), opened with
  ``open_shop`` and turned into klantbeeld's point-in-time customer features at T =
  1997-10-01 (week-39 cutoff). A LightGBM Poisson count model on those features predicts
  the holdout repeat count. There is no earlier 39-week window to train on (the cohort
  starts in week 1), so the model is cross-fitted: 5 seeded folds over customers, each
  fold scored by a model trained on the other four folds' features and holdout counts.
  BG/NBD uses no holdout data at all; klantbeeld uses other customers' holdout outcomes.

Metrics per set: total predicted vs actual holdout repeat transactions, per-customer MAE of
the holdout count, ROC-AUC for "any repeat transaction in the holdout".

Usage: ``python -m bench.public.cdnow --data DEST [--markdown docs/benchmarks.md]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from bench.public.report import generated_line, splice
from features import contract as c
from features.shop import open_shop
from features.snapshot import customer_features
from models import bgnbd

START = pd.Timestamp("1997-01-01")
CUTOFF = pd.Timestamp("1997-10-01")  # start of week 40: the feature snapshot time
END = pd.Timestamp("1998-07-01")  # end of week 78 (exclusive)
# Hardie's convention for the BG/NBD summaries: times in days / 7, measured to the last
# calibration day (1997-09-30) and from there to the last holdout day (1998-06-30).
CAL_END = CUTOFF - pd.Timedelta(days=1)
HOLDOUT_WEEKS = ((END - pd.Timedelta(days=1)) - CAL_END).days / 7
PUBLISHED = bgnbd.BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
SEED = 14
MARK_BEGIN = "<!-- cdnow:begin -->"
MARK_END = "<!-- cdnow:end -->"


def load(path: Path) -> pd.DataFrame:
    """CDNOW lines as ``customer_id, date, quantity, value`` (sample or master file)."""
    raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, comment=None)
    if raw.iloc[0, 0] == "customer_id":
        raw = raw.iloc[1:]
    if raw.shape[1] == 5:  # sample: master id, sample id, date, cds, dollars
        raw = raw.iloc[:, [1, 2, 3, 4]]
    raw.columns = ["customer_id", "date", "quantity", "value"]
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype(str),
            "date": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "quantity": raw["quantity"].astype(float),
            "value": raw["value"].astype(float),
        }
    )


def summaries(lines: pd.DataFrame) -> pd.DataFrame:
    """Per customer: x, t_x, T (weeks), holdout repeat transactions ``y``."""
    days = lines[["customer_id", "date"]].drop_duplicates()
    first = days.groupby("customer_id")["date"].min().rename("first")
    cal = days[days["date"] < CUTOFF]
    hold = days[(days["date"] >= CUTOFF) & (days["date"] < END)]
    out = pd.DataFrame(index=first.index)
    out["x"] = cal.groupby("customer_id").size().reindex(out.index).fillna(0) - 1
    last = cal.groupby("customer_id")["date"].max().reindex(out.index)
    out["t_x"] = (last - first).dt.days / 7
    out["T"] = (CAL_END - first).dt.days / 7
    out["y"] = hold.groupby("customer_id").size().reindex(out.index).fillna(0)
    return out


def write_shop(lines: pd.DataFrame, folder: Path) -> None:
    """Convert CDNOW into the data contract: customers, one placeholder item, purchases."""
    folder.mkdir(parents=True, exist_ok=True)
    first = lines.groupby("customer_id")["date"].min()
    pd.DataFrame({c.CUSTOMER_ID: first.index, c.CREATED_AT: first.to_numpy()}).to_parquet(
        folder / "customers.parquet"
    )
    pd.DataFrame({c.ITEM_ID: ["cd"], c.TITLE: ["CD"], c.CATEGORY: ["music"]}).to_parquet(
        folder / "items.parquet"
    )
    pd.DataFrame(
        {
            c.CUSTOMER_ID: lines["customer_id"],
            c.TS: lines["date"],
            c.EVENT_TYPE: c.PURCHASE,
            c.ITEM_ID: "cd",
            c.QUANTITY: lines["quantity"],
            c.VALUE: lines["value"],
            c.ORDER_ID: lines["customer_id"] + "-" + lines["date"].dt.strftime("%Y%m%d"),
        }
    ).to_parquet(folder / "events.parquet")


def klantbeeld_predictions(lines: pd.DataFrame, y: pd.Series, workdir: Path) -> pd.Series:
    """Cross-fitted LightGBM Poisson predictions of the holdout count (see module doc)."""
    write_shop(lines, workdir)
    shop = open_shop(workdir)
    feats = customer_features(shop, CUTOFF.to_pydatetime()).set_index(c.CUSTOMER_ID)
    X = feats.select_dtypes(include=["number", "bool"]).astype(float).reindex(y.index)
    pred = np.zeros(len(y))
    folds = KFold(n_splits=5, shuffle=True, random_state=SEED)
    for train, test in folds.split(X):
        model = lgb.LGBMRegressor(
            objective="poisson",
            n_estimators=300,
            learning_rate=0.03,
            num_leaves=15,
            min_child_samples=40,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=SEED,
            n_jobs=1,
            verbose=-1,
        )
        model.fit(X.iloc[train], y.iloc[train])
        pred[test] = np.asarray(model.predict(X.iloc[test]), dtype=float)
    return pd.Series(pred, index=y.index)


def metrics(y: pd.Series, pred: pd.Series) -> dict[str, float]:
    """Total predicted/actual, per-customer MAE, ROC-AUC of any holdout repeat."""
    return {
        "predicted": float(pred.sum()),
        "actual": float(y.sum()),
        "mae": float(np.abs(pred - y).mean()),
        "auc": float(roc_auc_score(y > 0, pred)),
    }


def run_set(name: str, path: Path) -> tuple[list[dict[str, object]], bgnbd.BGNBDParams]:
    """Fit and compare both models on one CDNOW file; returns result rows and BG/NBD params."""
    lines = load(path)
    s = summaries(lines)
    params = bgnbd.fit(s["x"].to_numpy(), s["t_x"].to_numpy(), s["T"].to_numpy())
    bg = pd.Series(
        bgnbd.expected_in_holdout(
            params, HOLDOUT_WEEKS, s["x"].to_numpy(), s["t_x"].to_numpy(), s["T"].to_numpy()
        ),
        index=s.index,
    )
    with tempfile.TemporaryDirectory(prefix="cdnow-shop-") as tmp:
        kb = klantbeeld_predictions(lines, s["y"], Path(tmp))
    rows: list[dict[str, object]] = []
    for model, pred in (("BG/NBD (ML fit)", bg), ("klantbeeld LightGBM Poisson, cross-fitted", kb)):
        rows.append(
            {"set": f"{name} ({len(s):,} customers)", "model": model, **metrics(s["y"], pred)}
        )
    return rows, params


def markdown(rows: list[dict[str, object]], params: bgnbd.BGNBDParams, command: str) -> str:
    """The generated results section for docs/benchmarks.md."""
    out = [
        MARK_BEGIN,
        generated_line(command),
        "",
        "| set | model | predicted holdout repeats | actual | MAE per customer "
        "| ROC-AUC any repeat |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['set']} | {r['model']} | {r['predicted']:,.0f} | {r['actual']:,.0f} "
            f"| {r['mae']:.4f} | {r['auc']:.4f} |"
        )
    out += ["", "| BG/NBD on the sample | r | α | a | b |", "|---|---|---|---|---|"]
    pub = PUBLISHED
    out.append(f"| published | {pub.r} | {pub.alpha} | {pub.a} | {pub.b} |")
    out.append(
        f"| fitted | {params.r:.4f} | {params.alpha:.4f} | {params.a:.4f} | {params.b:.4f} |"
    )
    dev = [abs(f / p - 1) * 100 for f, p in zip(_vals(params), _vals(pub), strict=True)]
    out.append("| deviation % | " + " | ".join(f"{d:.2f}" for d in dev) + " |")
    out.append(MARK_END)
    return "\n".join(out)


def _vals(p: bgnbd.BGNBDParams) -> tuple[float, float, float, float]:
    return (p.r, p.alpha, p.a, p.b)


def main() -> None:
    """Run both sets, print the table, optionally splice it into a Markdown file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path.home() / ".cache/klantbeeld/public")
    ap.add_argument("--markdown", type=Path, help="file whose cdnow section is replaced")
    args = ap.parse_args()
    rows, sample_params = run_set("sample", args.data / "cdnow/CDNOW_sample.txt")
    full_rows, _ = run_set("full", args.data / "cdnow/CDNOW_master.txt")
    rows += full_rows
    text = markdown(rows, sample_params, "make bench-public")
    print(text)
    if args.markdown:
        splice(args.markdown, text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
