"""Segment sizes and overlaps written as tables (CSV) and a chart (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from klantbeeld.atomic import atomic_write_text
from serving.segments.evaluate import SegmentReport


def write_segment_report(report: SegmentReport, out_dir: Path) -> dict[str, Path]:
    """Write ``segment_sizes.csv``, ``segment_overlaps.csv`` and ``segment_overlaps.png``.

    Parameters
    ----------
    report : SegmentReport
    out_dir : Path

    Returns
    -------
    dict of str to Path
        ``sizes``, ``overlaps``, ``chart``.

    Notes
    -----
    The sizes table has ``segment``, ``customers`` and ``share`` (of every customer in the
    segment table); the overlap table counts customers in both segments (diagonal: the
    sizes). The chart shows the overlap as a share of the row segment's size. Each file is
    written through a temporary file and a rename.
    """
    from training.plots import _pyplot, _save

    out_dir = Path(out_dir)
    names = list(report.sizes)
    n = max(report.n_customers, 1)
    sizes = "segment,customers,share\n" + "".join(
        f"{k},{v},{v / n:.6f}\n" for k, v in report.sizes.items()
    )
    atomic_write_text(out_dir / "segment_sizes.csv", sizes)
    atomic_write_text(
        out_dir / "segment_overlaps.csv", report.overlap.rename_axis("segment").to_csv()
    )
    plt = _pyplot()
    m = report.overlap.to_numpy(dtype=np.float64)
    diag = np.maximum(np.diag(m), 1.0)
    share = m / diag[:, None]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    im = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), [f"{k} ({report.sizes[k]:,})" for k in names])
    for i in range(len(names)):
        for j in range(len(names)):
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{share[i, j]:.0%}", ha="center", va="center", fontsize=7, c=colour)
    ax.set_title("share of the row segment also in the column segment")
    fig.colorbar(im, ax=ax, fraction=0.046)
    chart = _save(fig, out_dir / "segment_overlaps.png")
    return {
        "sizes": out_dir / "segment_sizes.csv",
        "overlaps": out_dir / "segment_overlaps.csv",
        "chart": chart,
    }


__all__ = ["write_segment_report"]
