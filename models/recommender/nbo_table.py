"""Ranked candidates of every customer, precomputed once per model for the online path.

A :class:`CandidateTable` holds, for every row of a fitted ``NextBestOffers`` (its known
customers plus the empty last row that unknown customers share), the first ``width``
entries of ``candidate_block`` for one (``n_per_source``, ``sources``) choice: item
positions, final scores and reason codes (item-kNN explanations left
:data:`~models.recommender.block.DEFERRED`: they are worked out, for the returned items
only, by ``NextBestOffers._explain_codes``). The candidates depend on the
model alone (histories are frozen in it; what changes online -- purchases, sends,
consent -- is applied by the business rules), so a request only reads its row.

:func:`cached_table` writes the table as ``.npy`` files into the model's folder
(``<model>/serving-tables/<key>``; a retrained model is a new folder, so a stale table
cannot survive) under a file lock, and every API worker memory-maps the same files: they
share one copy in the page cache. :func:`cached_tables` builds several: each process
takes the tables nobody is building yet first, so two workers starting together build
different tables at the same time. A model without a folder (fitted in memory) or a
read-only folder gets in-memory tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from klantbeeld.atomic import atomic_directory
from models.recommender.nbo_block import block_for_positions

if TYPE_CHECKING:
    from models.recommender.next_best import NextBestOffers

log = logging.getLogger(__name__)

#: Bump when the candidate computation changes, so cached tables are rebuilt.
TABLE_VERSION = 2
TABLE_DIR = "serving-tables"
#: Model rows per ``candidate_block`` call while building.
BUILD_CHUNK = 2048
_ARRAYS = ("items", "score", "reason")


@dataclass(frozen=True)
class CandidateTable:
    """Ranked candidates per model row (see module docstring).

    Attributes
    ----------
    items : ndarray of int32, shape (n_rows, width)
        Item positions in the model's ``ids_.items``, best first; ``-1`` pads.
    score : ndarray of float64, shape (n_rows, width)
        Final score (higher is better); ``-inf`` on pads.
    reason : ndarray of int32, shape (n_rows, width)
        Codes into ``model.reason_labels()``; ``DEFERRED`` for item-kNN entries (see
        module docstring); ``-1`` pads.
    n_per_source : int
    sources : tuple of str
        Sources the candidates were restricted to (sorted).
    """

    items: np.ndarray
    score: np.ndarray
    reason: np.ndarray
    n_per_source: int
    sources: tuple[str, ...]

    @property
    def width(self) -> int:
        """Entries kept per row."""
        return int(self.items.shape[1])

    def __len__(self) -> int:
        return int(self.items.shape[0])


def table_key(n_per_source: int, sources: Sequence[str], width: int) -> str:
    """Folder name of a table: version, ``n_per_source``, width and the sorted sources."""
    return f"v{TABLE_VERSION}-n{n_per_source}-w{width}-" + "+".join(sorted(sources))


def build_table(
    model: NextBestOffers,
    n_per_source: int,
    sources: Sequence[str],
    width: int,
    chunk: int = BUILD_CHUNK,
) -> CandidateTable:
    """Compute the table of every model row (known customers, then the empty row).

    Parameters
    ----------
    model : NextBestOffers
    n_per_source : int
        Candidates asked from each source per customer.
    sources : sequence of str
        Keep candidates whose best-ranking source is one of these.
    width : int
        Entries kept per row (the rest of a row is dropped).
    chunk : int
        Rows per ``candidate_block`` call.

    Returns
    -------
    CandidateTable
        Row ``p`` equals the first ``width`` entries of the block of model row ``p``
        (reasons as in ``CandidateBlock.reason``, deferred ones unresolved).
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    n_rows = len(model.ids_.users) + 1
    items = np.full((n_rows, width), -1, dtype=np.int32)
    score = np.full((n_rows, width), -np.inf, dtype=np.float64)
    reason = np.full((n_rows, width), -1, dtype=np.int32)
    for start in range(0, n_rows, chunk):
        pos = np.arange(start, min(start + chunk, n_rows), dtype=np.int64)
        block = block_for_positions(model, pos.astype(object), pos, n_per_source, sources)
        w = min(width, block.items.shape[1])
        items[pos, :w] = block.items[:, :w]
        score[pos, :w] = block.score[:, :w]
        reason[pos, :w] = block.reason[:, :w]
    return CandidateTable(items, score, reason, n_per_source, tuple(sorted(sources)))


def save_table(table: CandidateTable, path: str | Path) -> Path:
    """Write ``table`` to folder ``path`` atomically (``.npy`` arrays and ``table.json``)."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(table, name)))
        meta = {"n_per_source": table.n_per_source, "sources": list(table.sources)}
        (tmp / "table.json").write_text(json.dumps(meta))
    return path


def load_table(path: str | Path, mmap: bool = True) -> CandidateTable:
    """Read a table written by :func:`save_table` (arrays memory-mapped by default)."""
    path = Path(path)
    meta = json.loads((path / "table.json").read_text())
    mode: Literal["r"] | None = "r" if mmap else None
    items, score, reason = (
        np.load(path / f"{name}.npy", mmap_mode=mode, allow_pickle=False) for name in _ARRAYS
    )
    return CandidateTable(items, score, reason, int(meta["n_per_source"]), tuple(meta["sources"]))


def _fingerprint(folder: Path) -> str:
    """Short hash of the saved model's parameters (params.json: settings and ranker)."""
    return hashlib.sha256((folder / "params.json").read_bytes()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(lock: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on file ``lock``; yields False (not held) when ``wait`` is
    False and another process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


TableSpec = tuple[int, Sequence[str], int]


def _cached(model: NextBestOffers, spec: TableSpec, wait: bool) -> CandidateTable | None:
    """The table of ``spec`` from the model folder, built there if missing; None when
    ``wait`` is False and another process is building it. Raises OSError when the
    folder cannot be written."""
    n_per_source, sources, width = spec
    folder = Path(model.path_)
    n_rows = len(model.ids_.users) + 1
    name = f"{table_key(n_per_source, sources, width)}-{_fingerprint(folder)}"
    target = folder / TABLE_DIR / name
    with _locked(folder / TABLE_DIR / f".{name}.lock", wait) as held:
        if not held:
            return None
        if (target / "table.json").is_file():
            table = load_table(target)
            if table.items.shape == (n_rows, width):
                return table
            log.warning("candidate table %s does not fit the model; rebuilding", target)
        t0 = time.perf_counter()
        save_table(build_table(model, n_per_source, sources, width), target)
        log.info("candidate table %s: %d rows in %.1f s", name, n_rows, time.perf_counter() - t0)
        return load_table(target)


def _drop_other_versions(root: Path) -> None:
    """Delete tables of other :data:`TABLE_VERSION`s (best effort)."""
    if not root.is_dir():
        return
    for old in root.glob("v*"):
        if old.is_dir() and not old.name.startswith(f"v{TABLE_VERSION}-"):
            shutil.rmtree(old, ignore_errors=True)


def cached_tables(model: NextBestOffers, specs: Sequence[TableSpec]) -> list[CandidateTable]:
    """The tables of ``specs`` (``(n_per_source, sources, width)`` each), in that order.

    Memory-mapped from the model's folder and built there once (see module docstring):
    a table another process is building is waited for only after every other table is
    done. Without a model folder (``model.path_``) or when it cannot be written, the
    tables are built in memory.

    Parameters
    ----------
    model : NextBestOffers
    specs : sequence of (int, sequence of str, int)
        ``n_per_source``, ``sources`` and ``width`` of each table (see :func:`build_table`).

    Returns
    -------
    list of CandidateTable
    """
    folder = getattr(model, "path_", None)
    if folder is None or not (Path(folder) / "params.json").is_file():
        return [build_table(model, *spec) for spec in specs]
    _drop_other_versions(Path(folder) / TABLE_DIR)
    out: dict[int, CandidateTable] = {}
    try:
        for wait in (False, True):
            for k, spec in enumerate(specs):
                if k not in out:
                    got = _cached(model, spec, wait)
                    if got is not None:
                        out[k] = got
    except OSError as exc:
        log.warning("candidate tables not cached in %s (%s); kept in memory", folder, exc)
        return [out[k] if k in out else build_table(model, *spec) for k, spec in enumerate(specs)]
    return [out[k] for k in range(len(specs))]


def cached_table(
    model: NextBestOffers, n_per_source: int, sources: Sequence[str], width: int
) -> CandidateTable:
    """One table (see :func:`cached_tables`)."""
    return cached_tables(model, [(n_per_source, sources, width)])[0]


__all__ = [
    "CandidateTable",
    "TABLE_DIR",
    "TABLE_VERSION",
    "build_table",
    "cached_table",
    "cached_tables",
    "load_table",
    "save_table",
    "table_key",
]
