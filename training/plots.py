"""Evaluation plots written as PNG files (matplotlib figures, no display needed).

Figures are plain :class:`matplotlib.figure.Figure` objects (:func:`figures`), so drawing
them never switches matplotlib's backend: training from a notebook keeps its inline plots.

Each function draws one figure, writes it to ``path`` and returns ``path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.metrics import gain_curve


class _Figures:
    """The two pyplot calls the plots use, on plain Figures (no backend, no global state)."""

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, figsize: Any = None, **kwargs: Any) -> Any:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots(nrows, ncols, **kwargs)

    @staticmethod
    def close(fig: Any) -> None:
        """Nothing to release: a plain Figure is not registered with pyplot."""


def figures() -> _Figures:
    """A pyplot-like ``subplots``/``close`` that leaves matplotlib's backend alone."""
    return _Figures()


_pyplot = figures


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    _pyplot().close(fig)
    return path


def gain_lift_chart(y: np.ndarray, scores: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Cumulative gain (left) and lift (right) of each named score against the test labels.

    Parameters
    ----------
    y : numpy.ndarray
        0/1 outcomes of the test period.
    scores : dict of str to numpy.ndarray
        Score per row for each curve (model, baselines, oracle).
    """
    plt = _pyplot()
    fig, (ax_g, ax_l) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, p in scores.items():
        g = gain_curve(y, p, points=101)
        ax_g.plot(g.audience_share, g.positives_share, label=name)
        ax_l.plot(g.audience_share[5:], g.lift[5:], label=name)
    ax_g.plot([0, 1], [0, 1], "k:", lw=1, label="random")
    ax_g.set(xlabel="share of audience targeted", ylabel="share of positives captured")
    ax_g.set_title(f"{title}: cumulative gain")
    ax_l.axhline(1.0, color="k", ls=":", lw=1)
    ax_l.set(xlabel="share of audience targeted", ylabel="lift")
    ax_l.set_title("lift")
    ax_g.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def calibration_curve(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Mean predicted probability against observed rate per decile (a calibration table)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    hi = float(max(table.mean_predicted.max(), table.observed_rate.max()) * 1.05)
    ax.plot([0, hi], [0, hi], "k:", lw=1, label="perfect")
    ax.errorbar(
        table.mean_predicted,
        table.observed_rate,
        yerr=1.96 * table.std_error,
        fmt="o-",
        capsize=3,
        label="model (95% CI)",
    )
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", xlim=(0, hi), ylim=(0, hi))
    ax.set_title(f"{title}: calibration by decile")
    ax.legend(loc="upper left")
    return _save(fig, path)


def feature_importance(importance: pd.Series, path: Path, title: str, top: int = 25) -> Path:
    """Horizontal bars of the ``top`` features by importance (e.g. total gain)."""
    plt = _pyplot()
    imp = importance.sort_values(ascending=False, kind="stable").head(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(imp) + 1.2))
    ax.barh(imp.index.astype(str), imp.to_numpy())
    ax.set(xlabel=str(importance.name or "importance"))
    ax.set_title(f"{title}: feature importance")
    return _save(fig, path)


def contribution_summary(
    contrib: pd.DataFrame, values: pd.DataFrame, path: Path, title: str, top: int = 15
) -> Path:
    """SHAP-style summary: per feature, each row's contribution coloured by the feature's value.

    Parameters
    ----------
    contrib : pandas.DataFrame
        Per-row contributions (log-odds), one column per feature (``bias`` ignored).
    values : pandas.DataFrame
        The same rows' feature values; colour is the value's percentile rank (grey: missing
        or categorical).
    """
    plt = _pyplot()
    cols = [c for c in contrib.columns if c != "bias"]
    order = contrib[cols].abs().mean().sort_values(ascending=False, kind="stable").head(top)
    names = list(order.index)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        x = contrib[name].to_numpy()
        v = values[name] if name in values.columns else pd.Series(np.nan, index=values.index)
        if pd.api.types.is_numeric_dtype(v):
            colour = v.rank(pct=True).to_numpy()
        else:
            colour = np.full(len(v), np.nan)
        jitter = rng.uniform(-0.3, 0.3, len(x))
        ax.scatter(
            x,
            i + jitter,
            c=colour,
            cmap="coolwarm",
            s=4,
            alpha=0.6,
            vmin=0,
            vmax=1,
            plotnonfinite=True,
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="contribution to log-odds (colour: feature value, blue low → red high)")
    ax.set_title(f"{title}: feature contributions")
    return _save(fig, path)
