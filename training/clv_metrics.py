"""Evaluation of expected purchases and CLV against what happened in the test period.

Every function takes per-customer predictions and outcomes of the same rows (customers
with an order before T): ``purchases`` (orders in ``[T, T + H)``) and ``revenue`` (EUR).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.metrics import roc_auc


def _arr(name: str, v: np.ndarray | pd.Series, n: int | None = None) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).ravel()
    if n is not None and a.size != n:
        raise ValueError(f"{name} must have {n} entries (one per customer), got {a.size}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def clv_report(
    expected_purchases: np.ndarray | pd.Series,
    expected_spend: np.ndarray | pd.Series,
    purchases: np.ndarray | pd.Series,
    revenue: np.ndarray | pd.Series,
) -> dict[str, float]:
    """Count, spend and CLV quality of one model on one test period.

    Parameters
    ----------
    expected_purchases : array-like
        Predicted orders in the horizon per customer (count).
    expected_spend : array-like
        Predicted value per order (EUR).
    purchases : array-like
        Observed orders in the horizon (count).
    revenue : array-like
        Observed value of those orders (EUR).

    Returns
    -------
    dict of str to float
        ``mae_purchases`` and ``rmse_purchases`` (orders per customer),
        ``predicted_purchases`` / ``actual_purchases`` (totals, orders) and their ratio
        ``purchases_ratio``; ``mae_clv_eur`` and ``rmse_clv_eur`` (EUR per customer),
        ``predicted_clv_eur`` / ``actual_revenue_eur`` (totals) and ``clv_ratio``;
        ``mae_spend_eur`` (EUR per order, on customers who ordered, their mean order
        value); ``roc_auc_any_purchase`` (expected purchases as the score of "at least one
        order"; NaN when every or no customer ordered); ``customers``.
    """
    n_hat = _arr("expected_purchases", expected_purchases)
    n = n_hat.size
    if n == 0:
        raise ValueError("expected_purchases must not be empty")
    s_hat = _arr("expected_spend", expected_spend, n)
    y = _arr("purchases", purchases, n)
    r = _arr("revenue", revenue, n)
    clv = n_hat * s_hat
    buyers = y > 0
    out = {
        "customers": float(n),
        "mae_purchases": float(np.mean(np.abs(n_hat - y))),
        "rmse_purchases": float(np.sqrt(np.mean((n_hat - y) ** 2))),
        "predicted_purchases": float(n_hat.sum()),
        "actual_purchases": float(y.sum()),
        "purchases_ratio": float(n_hat.sum() / y.sum()) if y.sum() > 0 else float("nan"),
        "mae_clv_eur": float(np.mean(np.abs(clv - r))),
        "rmse_clv_eur": float(np.sqrt(np.mean((clv - r) ** 2))),
        "predicted_clv_eur": float(clv.sum()),
        "actual_revenue_eur": float(r.sum()),
        "clv_ratio": float(clv.sum() / r.sum()) if r.sum() > 0 else float("nan"),
        "mae_spend_eur": (
            float(np.mean(np.abs(s_hat[buyers] - r[buyers] / y[buyers])))
            if buyers.any()
            else float("nan")
        ),
        "roc_auc_any_purchase": (
            roc_auc(buyers.astype(np.float64), n_hat) if 0 < buyers.sum() < n else float("nan")
        ),
    }
    return out


def decile_table(
    predicted: np.ndarray | pd.Series, actual: np.ndarray | pd.Series, bins: int = 10
) -> pd.DataFrame:
    """Mean predicted and actual value per quantile bin of the prediction.

    Parameters
    ----------
    predicted, actual : array-like
        One value per customer (orders or EUR).
    bins : int
        Number of equal-size bins by predicted value (ties split by position).

    Returns
    -------
    pandas.DataFrame
        ``bin`` (1 = lowest predictions), ``customers``, ``predicted_mean``, ``actual_mean``.
    """
    p = _arr("predicted", predicted)
    a = _arr("actual", actual, p.size)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
    b = np.minimum(rank * bins // max(p.size, 1), bins - 1) + 1
    df = pd.DataFrame({"bin": b, "p": p, "a": a}).groupby("bin")
    return pd.DataFrame(
        {
            "customers": df.size(),
            "predicted_mean": df["p"].mean(),
            "actual_mean": df["a"].mean(),
        }
    ).reset_index()
