"""Batch scores for the API: the latest scores file, memory-mapped and indexed by customer.

:func:`training.batch_score.score_customers` writes
``<home>/scores/customer_scores_as_of=YYYY-MM-DD.parquet`` (``customer_id`` and, per model,
``<model>_score``, ``<model>_model_version``, ``<model>_top_up``, ``<model>_top_down``).
Parquet cannot be shared between processes without decoding it, so on first use the file
is converted once into plain ``.npy`` arrays (ids sorted as fixed-width bytes, scores,
versions, explanation codes into a feature-name vocabulary) under
``<home>/cache/scores-<name>-<size>-<mtime>/``. Every API worker then ``np.load``\\ s them
with ``mmap_mode="r"``: the operating system shares one copy of the pages between workers,
and a look-up is one binary search over the sorted ids (no per-row Python objects).
The cache folder is written under a temporary name and renamed into place. Value columns
of the CLV model (``expected_purchases_<H>d``, ``clv_<H>d`` in EUR; :data:`VALUE_RE`) are
cached the same way and served beside the scores (:meth:`ScoreIndex.values_at`). Scores rescored
online since the batch (real-time conversion intent, :mod:`serving.online_intent`) replace
the batch ones in the answer (:func:`with_online`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import contract as c
from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings

log = logging.getLogger(__name__)

SCORES_GLOB = "customer_scores_as_of=*.parquet"
_AS_OF_RE = re.compile(r"customer_scores_as_of=(\d{4}-\d{2}-\d{2})\.parquet$")
SCORE_SUFFIX = "_score"
VERSION_SUFFIX = "_model_version"
UP_SUFFIX = "_top_up"
DOWN_SUFFIX = "_top_down"
#: Batch-score columns served as plain values (expected orders and CLV over H days).
VALUE_RE = re.compile(r"^(expected_purchases|clv)_\d+d$")
#: Explanation features kept per direction (batch scoring writes up to 3).
EXPLAIN_K = 3
_META = "meta.json"


@dataclass(frozen=True)
class CustomerScore:
    """One model's score of one customer.

    Attributes
    ----------
    model : str
    score : float or None
        Calibrated probability; None when the model did not score the customer.
    model_version : int or None
        Registered model version that produced the score.
    top_up, top_down : list of str
        Up to 3 feature names pushing the score up / down.
    """

    model: str
    score: float | None
    model_version: int | None
    top_up: list[str]
    top_down: list[str]


def latest_scores_file(settings: Settings) -> Path:
    """Newest ``customer_scores_as_of=*.parquet`` under ``<home>/scores``.

    Raises
    ------
    NotTrainedError
        No scores file (run ``klantbeeld score`` first).
    """
    folder = Path(settings.home) / "scores"
    files = sorted(p for p in folder.glob(SCORES_GLOB) if _AS_OF_RE.search(p.name))
    if not files:
        raise NotTrainedError(
            f"no batch scores in {folder}; run `klantbeeld score --as-of <date>` first"
        )
    return files[-1]


def _codes(column: pa.ChunkedArray, vocab: dict[str, int]) -> np.ndarray:
    """List-of-string column -> (n, EXPLAIN_K) int16 codes into ``vocab`` (-1 padded)."""
    n = len(column)
    out = np.full((n, EXPLAIN_K), -1, dtype=np.int16)
    col = column.combine_chunks()
    if n == 0 or not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        return out
    offsets = col.offsets.to_numpy()
    offsets = offsets - offsets[0]
    enc = pc.dictionary_encode(col.flatten())
    names = [str(v) for v in enc.dictionary.to_pylist()]
    for name in names:
        vocab.setdefault(name, len(vocab))
    to_global = np.array([vocab[v] for v in names] + [-1], dtype=np.int16)
    local = pc.fill_null(enc.indices, len(names)).to_numpy().astype(np.int64)
    codes = to_global[local]
    lengths = np.minimum(np.diff(offsets), EXPLAIN_K)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    for k in range(EXPLAIN_K):
        has = valid & (lengths > k)
        out[has, k] = codes[offsets[:-1][has] + k]
    return out


def build_scores_cache(parquet: Path, folder: Path) -> Path:
    """Convert a batch scores file into memory-mappable arrays in ``folder`` (atomic).

    Parameters
    ----------
    parquet : Path
        Batch scores file (see module docstring).
    folder : Path
        Cache folder to create; left as is when it already exists.

    Returns
    -------
    Path
        ``folder``.
    """
    if (folder / _META).is_file():
        return folder
    table = pq.read_table(parquet)
    if c.CUSTOMER_ID not in table.column_names:
        raise NotTrainedError(f"scores file {parquet} has no {c.CUSTOMER_ID!r} column")
    models = [
        name.removesuffix(SCORE_SUFFIX)
        for name in table.column_names
        if name.endswith(SCORE_SUFFIX)
    ]
    ids = pc.cast(table[c.CUSTOMER_ID], pa.string()).to_numpy(zero_copy_only=False)
    raw = np.array([str(x).encode("utf-8") for x in ids], dtype=object)
    width = max((len(b) for b in raw), default=1)
    id_bytes = raw.astype(f"S{max(width, 1)}")
    order = np.argsort(id_bytes, kind="stable")
    sorted_ids = id_bytes[order]
    if len(sorted_ids) > 1 and (sorted_ids[1:] == sorted_ids[:-1]).any():
        raise NotTrainedError(f"scores file {parquet} has duplicate customer ids")
    as_of = None
    if "as_of" in table.column_names and table.num_rows:
        as_of = str(table["as_of"][0].as_py())
    else:
        m = _AS_OF_RE.search(parquet.name)
        as_of = m.group(1) if m else None

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        np.save(tmp / "ids.npy", sorted_ids)
        vocab: dict[str, int] = {}
        for m in models:
            score = table[f"{m}{SCORE_SUFFIX}"].to_numpy().astype(np.float64)
            np.save(tmp / f"{m}.score.npy", score[order])
            vname = f"{m}{VERSION_SUFFIX}"
            if vname in table.column_names:
                version = pc.fill_null(table[vname], -1).to_numpy().astype(np.int32)
            else:
                version = np.full(len(order), -1, dtype=np.int32)
            np.save(tmp / f"{m}.version.npy", version[order])
            for suffix, tag in ((UP_SUFFIX, "up"), (DOWN_SUFFIX, "down")):
                name = f"{m}{suffix}"
                codes = (
                    _codes(table[name], vocab)
                    if name in table.column_names
                    else np.full((len(order), EXPLAIN_K), -1, dtype=np.int16)
                )
                np.save(tmp / f"{m}.{tag}.npy", codes[order])
        values = [name for name in table.column_names if VALUE_RE.match(name)]
        for name in values:
            col = pc.fill_null(pc.cast(table[name], pa.float64()), float("nan"))
            np.save(tmp / f"value.{name}.npy", col.to_numpy().astype(np.float64)[order])
        meta = {
            "source": str(parquet),
            "as_of": as_of,
            "models": models,
            "values": values,
            "features": sorted(vocab, key=vocab.__getitem__),
            "n_customers": len(order),
        }
        (tmp / _META).write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, folder)
        except OSError:
            # another worker won the race and put an identical folder in place
            if not (folder / _META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("scores cache %s: %d customers, models %s", folder, len(order), models)
    return folder


class ScoreIndex:
    """Read-only, memory-mapped batch scores with O(log n) look-up by customer id.

    Build with :meth:`open` (a scores Parquet file, cached as ``.npy``) or :meth:`load`
    (a cache folder).

    Attributes
    ----------
    as_of : str or None
        Snapshot time of the scores.
    models : list of str
        Models with a score column.
    ids : ndarray of bytes
        Sorted customer ids (UTF-8, fixed width), memory-mapped.
    source : str
        The Parquet file the scores came from.
    """

    def __init__(self, folder: Path) -> None:
        meta = json.loads((folder / _META).read_text())
        self.folder = folder
        self.source: str = meta["source"]
        self.as_of: str | None = meta["as_of"]
        self.models: list[str] = list(meta["models"])
        self.features = np.array(meta["features"] + [""], dtype=object)  # code -1 -> ""
        self.ids: np.ndarray = np.load(folder / "ids.npy", mmap_mode="r")
        self._arrays: dict[str, dict[str, np.ndarray]] = {
            m: {
                part: np.load(folder / f"{m}.{part}.npy", mmap_mode="r")
                for part in ("score", "version", "up", "down")
            }
            for m in self.models
        }
        self.values: list[str] = list(meta.get("values", []))
        self._values = {v: np.load(folder / f"value.{v}.npy", mmap_mode="r") for v in self.values}

    @classmethod
    def load(cls, folder: str | Path) -> ScoreIndex:
        """Open a cache folder written by :func:`build_scores_cache`."""
        return cls(Path(folder))

    @classmethod
    def open(cls, parquet: str | Path, cache_root: str | Path) -> ScoreIndex:
        """Open a scores Parquet file through its ``.npy`` cache under ``cache_root``.

        The cache folder name holds the file's name, size and modification time, so a
        rewritten scores file gets a fresh cache.
        """
        p = Path(parquet)
        st = p.stat()
        key = f"scores-{p.stem}-{st.st_size}-{st.st_mtime_ns}"
        return cls(build_scores_cache(p, Path(cache_root) / key))

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, customer_id: str) -> int:
        """Row of ``customer_id`` in the sorted arrays, or -1 when it has no scores."""
        key = customer_id.encode("utf-8")
        if not key or len(key) > self.ids.dtype.itemsize or b"\x00" in key:
            return -1
        n = len(self.ids)
        at = int(np.searchsorted(self.ids, key))
        return at if at < n and self.ids[at] == key else -1

    def positions(self, customer_ids: Any) -> np.ndarray:
        """Rows of many customer ids at once (-1 where absent), int64."""
        raw = np.asarray([str(x).encode("utf-8") for x in customer_ids], dtype=object)
        if len(raw) == 0 or len(self.ids) == 0:
            return np.full(len(raw), -1, dtype=np.int64)
        width = self.ids.dtype.itemsize
        fits = np.array([0 < len(b) <= width and b"\x00" not in b for b in raw], dtype=bool)
        keys = np.where(fits, raw, b"").astype(f"S{width}")
        at = np.minimum(np.searchsorted(self.ids, keys), len(self.ids) - 1)
        hit = fits & (self.ids[at] == keys)
        return np.where(hit, at, -1).astype(np.int64)

    def scores_at(self, row: int) -> list[CustomerScore]:
        """Every model's score, version and explanation for one row."""
        out = []
        for m in self.models:
            a = self._arrays[m]
            s = float(a["score"][row])
            v = int(a["version"][row])
            out.append(
                CustomerScore(
                    model=m,
                    score=None if np.isnan(s) else s,
                    model_version=None if v < 0 else v,
                    top_up=[str(self.features[k]) for k in a["up"][row] if k >= 0],
                    top_down=[str(self.features[k]) for k in a["down"][row] if k >= 0],
                )
            )
        return out

    def values_at(self, row: int) -> dict[str, float | None]:
        """The value columns (:data:`VALUE_RE`) of one row; None where not scored."""
        out: dict[str, float | None] = {}
        for name, arr in self._values.items():
            v = float(arr[row])
            out[name] = None if np.isnan(v) else v
        return out

    def score_array(self, model: str) -> np.ndarray:
        """Scores of ``model`` in sorted-id order (memory-mapped; NaN: not scored)."""
        return self._arrays[model]["score"]


def with_online(scores: list[CustomerScore], online: dict[str, Any]) -> list[CustomerScore]:
    """Batch scores of one customer with the online ones put in their place.

    Parameters
    ----------
    scores : list of CustomerScore
        From :meth:`ScoreIndex.scores_at`.
    online : dict of str to serving.online_store.OnlineScore
        Model -> online score extending the same batch (``as_of``), e.g. conversion
        intent rescored from session events posted since.

    Returns
    -------
    list of CustomerScore
        Same models and order; a model with an online score carries its score, model
        version and explanations.
    """
    if not online:
        return scores
    out = []
    for s in scores:
        o = online.get(s.model)
        if o is not None:
            s = replace(
                s,
                score=o.score,
                model_version=o.model_version,
                top_up=o.top_up,
                top_down=o.top_down,
            )
        out.append(s)
    return out


__all__ = [
    "CustomerScore",
    "with_online",
    "ScoreIndex",
    "build_scores_cache",
    "latest_scores_file",
]
