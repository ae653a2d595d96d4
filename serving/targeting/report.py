"""Write a threshold choice as a JSON report and a PNG of audience share vs conversions kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from klantbeeld.atomic import atomic_write_text
from serving.targeting.curve_source import BacktestCurve
from serving.targeting.threshold import ThresholdChoice, oracle_share_to_keep


def choice_report(source: BacktestCurve, choice: ThresholdChoice) -> dict[str, Any]:
    """JSON-ready report of a choice, with the run it was read from and the oracle ratio.

    Parameters
    ----------
    source : BacktestCurve
    choice : ThresholdChoice

    Returns
    -------
    dict
        ``model``, ``run_id``, ``test_period``, the choice's fields, ``spend_saved_vs``
        (what the saving is measured against) and, on the demo shop,
        ``audience_vs_oracle`` (audience share / oracle audience share keeping as many
        conversions).
    """
    out: dict[str, Any] = {
        "model": source.model,
        "run_id": source.run_id,
        "test_period": source.test_period,
        **choice.as_dict(),
        "spend_saved_vs": (
            "targeting every recent visitor (everyone the model scores)"
            if source.model == "conversion_intent"
            else "targeting everyone the model scores"
        ),
    }
    if choice.oracle_audience_share:
        out["audience_vs_oracle"] = choice.audience_share / choice.oracle_audience_share
    return out


def plot_choice(curve: pd.DataFrame, choice: ThresholdChoice, path: Path, title: str) -> Path:
    """PNG: conversions kept against audience share, the oracle's curve and the chosen point.

    Parameters
    ----------
    curve : DataFrame
        Threshold curve (:func:`training.threshold_curve.threshold_curve`).
    choice : ThresholdChoice
    path : Path
        PNG to write (through a temporary file and a rename).
    title : str

    Returns
    -------
    Path
    """
    from training.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    c = curve.sort_values("audience_size", kind="stable")
    x = [0.0, *c["audience_share"].tolist()]
    ax.plot(x, [0.0, *c["conversions_share"].tolist()], label="model (actual conversions)")
    if "expected_conversions_share" in c.columns:
        ax.plot(
            x,
            [0.0, *c["expected_conversions_share"].tolist()],
            "--",
            lw=1,
            label="model (expected conversions)",
        )
    if "oracle_conversions_share" in c.columns:
        ax.plot(x, [0.0, *c["oracle_conversions_share"].tolist()], label="oracle (true propensity)")
        o = oracle_share_to_keep(c, choice.conversions_kept)
        if o is not None:
            ax.scatter(
                [o],
                [choice.conversions_kept],
                marker="x",
                color="k",
                zorder=3,
                label=f"oracle at the same conversions ({o:.1%})",
            )
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="random")
    ax.scatter(
        [choice.audience_share],
        [choice.conversions_kept],
        s=60,
        color="red",
        zorder=4,
        label=f"chosen: score >= {choice.threshold:.3f}",
    )
    ax.annotate(
        f"{choice.audience_share:.1%} of audience, {choice.conversions_kept:.1%} of conversions\n"
        f"spend saved {choice.spend_saved:.1%}",
        (choice.audience_share, choice.conversions_kept),
        xytext=(10, -40),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set(
        xlabel="audience share (of everyone scored)",
        ylabel="conversions kept",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, Path(path))


def write_choice(source: BacktestCurve, choice: ThresholdChoice, out_dir: Path) -> dict[str, Any]:
    """Write ``<out_dir>/threshold_<model>.json`` and ``.png`` (atomic); return the report.

    Parameters
    ----------
    source : BacktestCurve
    choice : ThresholdChoice
    out_dir : Path

    Returns
    -------
    dict
        The report, with ``report_file`` and ``plot_file`` added.
    """
    out_dir = Path(out_dir)
    stem = f"threshold_{source.model}"
    png = plot_choice(
        source.curve,
        choice,
        out_dir / f"{stem}.png",
        f"{source.model}, test period {source.test_period}",
    )
    report = choice_report(source, choice)
    report["plot_file"] = str(png)
    report["report_file"] = str(out_dir / f"{stem}.json")
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    return report


__all__ = ["choice_report", "plot_choice", "write_choice"]
