"""Automatic segments: k-means on scaled behavioural features, each cluster described.

Behavioural features (recency, frequency, spend, sessions, views, carts, e-mail engagement,
category and channel shares) of a customer feature snapshot are scaled before clustering:
counts, money and day counts are skewed, so they go through ``log1p`` first; every column
is then centred on its median and divided by its inter-quartile range (a few heavy buyers
do not stretch the scale for everyone), and clipped to [-5, 5]. Missing values (e.g. no
purchase yet: no recency) become the column's median (0 after scaling); other columns
(orders, spend) still tell such customers apart.

Each cluster is described by its most distinctive features: the difference between the
cluster's mean and everyone's mean on the scaled column, in units of the column's standard
deviation, with the raw medians of the cluster and of everyone, so a marketer can read
"recency_days low (median 4 vs 63)" and name the group.

k is a parameter or chosen by the silhouette score on a seeded sample; everything is seeded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.errors import ConfigError

#: Feature name prefixes counted as behaviour (not scores, not attributes);
#: ``days_since_last_purchase`` is left out: it equals ``recency_days``.
BEHAVIOUR_PREFIXES = (
    "recency_days",
    "orders_",
    "monetary_",
    "sessions_",
    "days_since_last_session",
    "product_views_",
    "add_to_carts_",
    "abandoned_carts_",
    "email_opens_",
    "email_clicks_",
    "view_share_",
    "purchase_share_",
    "channel_share_",
    "interval_mean_days",
)
#: Shares and rates are already on [0, 1]; everything else is log1p'd.
_UNIT_PREFIXES = ("view_share_", "purchase_share_", "channel_share_", "email_open_rate_")
_WINDOW = re.compile(r"_(?:decay_)?\d+d$")


def feature_family(name: str) -> str:
    """``sessions_decay_90d``, ``sessions_7d`` -> ``sessions``: one measure, many windows."""
    return _WINDOW.sub("", name)


def behaviour_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric columns of a customer feature snapshot that describe behaviour.

    Parameters
    ----------
    frame : DataFrame
        Customer feature snapshot.

    Returns
    -------
    list of str
        Columns starting with one of :data:`BEHAVIOUR_PREFIXES`, numeric, not constant.
    """
    out = []
    for name in frame.columns:
        col = frame[name]
        if not str(name).startswith(BEHAVIOUR_PREFIXES):
            continue
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            continue
        if col.nunique(dropna=True) > 1:
            out.append(str(name))
    return out


def scale_behaviour(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``log1p`` (non-share columns), median/IQR scaling, clip to [-5, 5]; NaN -> 0.

    Parameters
    ----------
    frame : DataFrame
    columns : list of str

    Returns
    -------
    ndarray of float64, shape (len(frame), len(columns))
    """
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        x = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        if not name.startswith(_UNIT_PREFIXES):
            x = np.log1p(np.clip(x, 0.0, None))
        med = np.nanmedian(x) if np.isfinite(x).any() else 0.0
        q1, q3 = np.nanpercentile(x, [25, 75]) if np.isfinite(x).any() else (0.0, 0.0)
        iqr = q3 - q1
        if iqr <= 0:
            sd = np.nanstd(x) if np.isfinite(x).any() else 0.0
            iqr = sd if sd > 0 else 1.0
        z = (x - med) / iqr
        out[:, j] = np.clip(np.nan_to_num(z, nan=0.0), -5.0, 5.0)
    return out


@dataclass(frozen=True)
class AutoSegments:
    """The clustering and its description.

    Attributes
    ----------
    assignment : DataFrame
        ``customer_id``, ``cluster`` (0..k-1, clusters numbered by size, largest first).
    description : DataFrame
        Per cluster and top feature: ``cluster``, ``size``, ``share``, ``rank``,
        ``feature``, ``direction`` (high/low), ``effect`` (standardised mean difference),
        ``cluster_median``, ``overall_median`` (raw units).
    k : int
    columns : list of str
    silhouette : dict of int to float
        Silhouette score per k tried (on a sample; empty when k was given).
    """

    assignment: pd.DataFrame
    description: pd.DataFrame
    k: int
    columns: list[str]
    silhouette: dict[int, float] = field(default_factory=dict)

    def labels(self) -> dict[int, str]:
        """A short generated name per cluster from its top two features."""
        out: dict[int, str] = {}
        d = self.description
        for k in sorted(d["cluster"].unique().tolist()):
            top = d[d["cluster"] == k].sort_values("rank").head(2)
            out[int(k)] = ", ".join(
                f"{r} {f}" for f, r in zip(top.feature, top.direction, strict=True)
            )
        return out


def _choose_k(x: np.ndarray, ks: range, seed: int, sample: int) -> tuple[int, dict[int, float]]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    scores: dict[int, float] = {}
    for k in ks:
        if k >= len(rows):
            break
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x[rows])
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(x[rows], labels, random_state=seed))
    if not scores:
        raise ConfigError("too few distinct customers to choose k for automatic segments")
    return max(scores, key=lambda k: (scores[k], -k)), scores


def auto_segments(
    features: pd.DataFrame,
    k: int | None = None,
    *,
    seed: int = 42,
    k_range: range = range(3, 9),
    top: int = 4,
    sample: int = 5000,
) -> AutoSegments:
    """Cluster customers on scaled behavioural features and describe each cluster.

    Parameters
    ----------
    features : DataFrame
        Customer feature snapshot (``customer_id`` and feature columns).
    k : int, optional
        Number of clusters; default chosen from ``k_range`` by silhouette on ``sample`` rows.
    seed : int
        Seeds the sample and k-means.
    top : int
        Distinctive features listed per cluster, at most one per family
        (:func:`feature_family`: the same measure over different windows).

    Returns
    -------
    AutoSegments

    Raises
    ------
    ConfigError
        No behavioural column, fewer customers than clusters, or ``k < 2``.
    """
    from sklearn.cluster import KMeans

    columns = behaviour_columns(features)
    if not columns:
        raise ConfigError("no behavioural feature columns for automatic segments")
    if k is not None and (k < 2 or k > len(features)):
        raise ConfigError(f"k must lie in [2, {len(features)}], got {k}")
    x = scale_behaviour(features, columns)
    tried: dict[int, float] = {}
    if k is None:
        k, tried = _choose_k(x, k_range, seed, sample)
    raw = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    # number clusters by size (largest first; ties by first occurrence) so ids are stable
    counts = np.bincount(raw, minlength=k)
    order = np.lexsort((np.arange(k), -counts))
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    labels = relabel[raw]
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    rows = []
    for cl in range(k):
        inside = labels == cl
        effect = (x[inside].mean(axis=0) - mean) / sd
        picked: list[int] = []
        for j in np.argsort(-np.abs(effect), kind="stable"):
            if len(picked) == top:
                break
            if all(feature_family(columns[j]) != feature_family(columns[i]) for i in picked):
                picked.append(int(j))
        for rank, j in enumerate(picked):
            col = features[columns[j]]
            rows.append(
                {
                    "cluster": cl,
                    "size": int(inside.sum()),
                    "share": float(inside.mean()),
                    "rank": rank,
                    "feature": columns[j],
                    "direction": "high" if effect[j] > 0 else "low",
                    "effect": float(effect[j]),
                    "cluster_median": float(col[inside].median()),
                    "overall_median": float(col.median()),
                }
            )
    assignment = pd.DataFrame(
        {c.CUSTOMER_ID: features[c.CUSTOMER_ID].astype(str).to_numpy(), "cluster": labels}
    )
    return AutoSegments(assignment, pd.DataFrame(rows), k, columns, tried)


__all__ = [
    "AutoSegments",
    "auto_segments",
    "behaviour_columns",
    "feature_family",
    "scale_behaviour",
]
