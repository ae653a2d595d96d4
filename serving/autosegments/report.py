"""Write automatic segments: assignment (Parquet), descriptions (CSV) and a summary (JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from klantbeeld.atomic import atomic_write_text
from klantbeeld.errors import NotTrainedError
from serving.autosegments.kmeans import AutoSegments


def latest_customer_snapshot(features_dir: Path) -> Path:
    """The newest ``<features_dir>/as_of=<date>/customer.parquet``.

    Raises
    ------
    NotTrainedError
        No snapshot yet (run ``klantbeeld features``).
    """
    found = sorted(Path(features_dir).glob("as_of=*/customer.parquet"))
    if not found:
        raise NotTrainedError(
            f"no customer feature snapshot under {features_dir}: run `klantbeeld features`"
        )
    return found[-1]


def write_auto_segments(result: AutoSegments, out_dir: Path, source: str) -> dict[str, Any]:
    """Write ``auto_segments.parquet``, ``auto_segments_description.csv`` and
    ``auto_segments.json`` to ``out_dir``, each through a temporary file and a rename.

    Parameters
    ----------
    result : AutoSegments
    out_dir : Path
    source : str
        The feature snapshot clustered (recorded in the summary).

    Returns
    -------
    dict
        The summary: ``k``, ``source``, ``silhouette``, per cluster ``size``, ``share``
        and a generated ``label``, and the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet = out_dir / "auto_segments.parquet"
    tmp = out_dir / ".auto_segments.parquet.tmp"
    result.assignment.to_parquet(tmp, index=False)
    tmp.replace(parquet)
    csv = out_dir / "auto_segments_description.csv"
    atomic_write_text(csv, result.description.to_csv(index=False))
    labels = result.labels()
    sizes = result.description.drop_duplicates("cluster").set_index("cluster")
    summary: dict[str, Any] = {
        "k": result.k,
        "source": source,
        "columns": result.columns,
        "silhouette": {str(k): v for k, v in result.silhouette.items()},
        "clusters": [
            {
                "cluster": int(cl),
                "size": int(sizes.loc[cl, "size"]),
                "share": float(sizes.loc[cl, "share"]),
                "label": labels[int(cl)],
            }
            for cl in sizes.index
        ],
        "files": {"assignment": str(parquet), "description": str(csv)},
    }
    atomic_write_text(out_dir / "auto_segments.json", json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = ["latest_customer_snapshot", "write_auto_segments"]
