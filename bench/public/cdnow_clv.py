"""CDNOW spend and CLV: Gamma-Gamma and klantbeeld's CLV model on the Fader-Hardie protocol.

Same data, periods and transactions as :mod:`bench.public.cdnow` (weeks 1–39 calibration,
40–78 holdout; a transaction is a customer's purchase day, its value the day's total, USD).

- **Gamma-Gamma check** (Fader, Hardie & Lee 2005, "RFM and CLV"): fitted by maximum
  likelihood on the sample's customers with repeat transactions in the calibration period,
  on the mean value of those repeat transactions; published p = 6.25, q = 3.74,
  γ = 15.44.
- **BG/NBD × Gamma-Gamma**: expected holdout repeat transactions (BG/NBD, ML fit) times
  the Gamma-Gamma expected spend per transaction (population mean for customers without
  repeats) = expected holdout revenue.
- **klantbeeld CLV model** (:class:`models.clv.CLVModel`: LightGBM Poisson count × Gamma
  spend) on the point-in-time customer features at T = 1997-10-01, cross-fitted like the
  count benchmark (5 seeded folds over customers; inside the four training folds a seeded
  20% is the early-stopping set). It learns from other customers' holdout outcomes, the
  classic models from none.

Metrics per set (:func:`training.clv_metrics.clv_report`): per-customer MAE of the holdout
revenue (USD) and of the repeat count, total predicted vs actual revenue, ROC-AUC of any
repeat transaction.

Usage: ``python -m bench.public.cdnow_clv --data DEST [--markdown docs/benchmarks.md]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from bench.public import cdnow
from bench.public.report import generated_line, splice
from features.shop import open_shop
from features.snapshot import customer_features
from models import bgnbd
from models import gamma_gamma as gg
from models.clv import CLV, EXPECTED_PURCHASES, EXPECTED_SPEND, CLVModel
from training.clv_metrics import clv_report

PUBLISHED = gg.GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
MARK_BEGIN = "<!-- cdnow-clv:begin -->"
MARK_END = "<!-- cdnow-clv:end -->"


def repeat_spend(lines: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Per customer of ``index``: calibration repeat days ``x`` and their mean value ``m``."""
    cal = lines[lines["date"] < cdnow.CUTOFF]
    day = cal.groupby(["customer_id", "date"])["value"].sum().reset_index()  # sorted by key
    rep = day[day.groupby("customer_id").cumcount() > 0]
    agg = rep.groupby("customer_id")["value"].agg(["size", "mean"]).reindex(index)
    return pd.DataFrame({"x": agg["size"].fillna(0.0), "m": agg["mean"].fillna(0.0)}, index=index)


def holdout_revenue(lines: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Holdout (weeks 40–78) revenue per customer (USD)."""
    hold = lines[(lines["date"] >= cdnow.CUTOFF) & (lines["date"] < cdnow.END)]
    return hold.groupby("customer_id")["value"].sum().reindex(index).fillna(0.0)


def classic(s: pd.DataFrame, spend: pd.DataFrame) -> tuple[pd.DataFrame, gg.GammaGammaParams]:
    """BG/NBD × Gamma-Gamma predictions per customer and the Gamma-Gamma parameters."""
    params = bgnbd.fit(s["x"].to_numpy(), s["t_x"].to_numpy(), s["T"].to_numpy())
    n = bgnbd.expected_in_holdout(
        params, cdnow.HOLDOUT_WEEKS, s["x"].to_numpy(), s["t_x"].to_numpy(), s["T"].to_numpy()
    )
    ok = (spend["x"] > 0) & (spend["m"] > 0)
    g = gg.fit(spend.loc[ok, "x"].to_numpy(), spend.loc[ok, "m"].to_numpy())
    z = gg.expected_spend(g, spend["x"].to_numpy(), spend["m"].to_numpy())
    out = pd.DataFrame({EXPECTED_PURCHASES: n, EXPECTED_SPEND: z}, index=s.index)
    out[CLV] = out[EXPECTED_PURCHASES] * out[EXPECTED_SPEND]
    return out, g


def klantbeeld_clv(
    lines: pd.DataFrame, y: pd.Series, revenue: pd.Series, workdir: Path
) -> pd.DataFrame:
    """Cross-fitted :class:`CLVModel` predictions of the holdout (see module docstring)."""
    cdnow.write_shop(lines, workdir)
    feats = customer_features(open_shop(workdir), cdnow.CUTOFF.to_pydatetime())
    X = feats.set_index("customer_id").reindex(y.index).reset_index(drop=True)
    yv, rv = y.to_numpy(dtype=float), revenue.to_numpy(dtype=float)
    out = pd.DataFrame(np.nan, index=range(len(y)), columns=[EXPECTED_PURCHASES, EXPECTED_SPEND])
    rng = np.random.default_rng(cdnow.SEED)
    for train, test in KFold(5, shuffle=True, random_state=cdnow.SEED).split(X):
        stop = rng.random(len(train)) < 0.2
        fit, es = train[~stop], train[stop]
        model = CLVModel(39 * 7, random_state=cdnow.SEED, num_threads=1)
        model.fit(X.iloc[fit], yv[fit], rv[fit], X.iloc[es], yv[es], rv[es])
        pred = model.predict_frame(X.iloc[test])
        out.iloc[test, :] = pred[[EXPECTED_PURCHASES, EXPECTED_SPEND]].to_numpy()
    out.index = y.index
    out[CLV] = out[EXPECTED_PURCHASES] * out[EXPECTED_SPEND]
    return out


def run_set(name: str, path: Path) -> tuple[list[dict[str, object]], gg.GammaGammaParams]:
    """Both CLV predictions on one CDNOW file; result rows and the Gamma-Gamma parameters."""
    lines = cdnow.load(path)
    s = cdnow.summaries(lines)
    revenue = holdout_revenue(lines, s.index)
    base, params = classic(s, repeat_spend(lines, s.index))
    with tempfile.TemporaryDirectory(prefix="cdnow-clv-") as tmp:
        kb = klantbeeld_clv(lines, s["y"], revenue, Path(tmp))
    # reference: nobody buys again. Most customers make no holdout repeat, so the median
    # (the MAE-optimal point prediction) is 0 for them; RMSE rewards the mean instead.
    zero = pd.DataFrame({EXPECTED_PURCHASES: 0.0, EXPECTED_SPEND: 0.0}, index=s.index)
    rows: list[dict[str, object]] = []
    for model, pred in (
        ("BG/NBD × Gamma-Gamma (ML fits)", base),
        ("klantbeeld CLV model (LightGBM Poisson × Gamma), cross-fitted", kb),
        ("reference: predict 0 for everyone", zero),
    ):
        report = clv_report(pred[EXPECTED_PURCHASES], pred[EXPECTED_SPEND], s["y"], revenue)
        rows.append({"set": f"{name} ({len(s):,} customers)", "model": model, **report})
    return rows, params


def markdown(rows: list[dict[str, object]], params: gg.GammaGammaParams, command: str) -> str:
    """The generated section for docs/benchmarks.md."""
    out = [
        MARK_BEGIN,
        generated_line(command),
        "",
        "| set | model | predicted holdout revenue (USD) | actual | MAE revenue per customer "
        "(USD) | RMSE revenue (USD) | MAE repeats per customer | RMSE repeats "
        "| ROC-AUC any repeat |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        auc = float(r["roc_auc_any_purchase"])  # type: ignore[arg-type]
        out.append(
            f"| {r['set']} | {r['model']} | {r['predicted_clv_eur']:,.0f} "
            f"| {r['actual_revenue_eur']:,.0f} | {r['mae_clv_eur']:.2f} "
            f"| {r['rmse_clv_eur']:.2f} | {r['mae_purchases']:.4f} "
            f"| {r['rmse_purchases']:.4f} | {auc:.4f} |"
        )
    pub = PUBLISHED
    out += ["", "| Gamma-Gamma on the sample | p | q | γ |", "|---|---|---|---|"]
    out.append(f"| published | {pub.p} | {pub.q} | {pub.gamma} |")
    out.append(f"| fitted | {params.p:.4f} | {params.q:.4f} | {params.gamma:.4f} |")
    dev = [
        abs(f / p - 1) * 100
        for f, p in zip((params.p, params.q, params.gamma), (pub.p, pub.q, pub.gamma), strict=True)
    ]
    out.append("| deviation % | " + " | ".join(f"{d:.2f}" for d in dev) + " |")
    out.append(MARK_END)
    return "\n".join(out)


def main() -> None:
    """Run both sets, print the table, optionally splice it into a Markdown file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path.home() / ".cache/klantbeeld/public")
    ap.add_argument("--markdown", type=Path, help="file whose cdnow-clv section is replaced")
    args = ap.parse_args()
    rows, sample_params = run_set("sample", args.data / "cdnow/CDNOW_sample.txt")
    full_rows, _ = run_set("full", args.data / "cdnow/CDNOW_master.txt")
    text = markdown(rows + full_rows, sample_params, "make bench-public")
    print(text)
    if args.markdown:
        splice(args.markdown, text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
