"""The recommender contract, stated once.

Every candidate source (popularity, ALS, item-kNN, EASE, recently viewed, buy again)
subclasses :class:`Recommender`. Users and items are integer row/column positions of a
``scipy.sparse.csr_matrix`` (see :mod:`models.recommender.interactions` for the maps
between shop ids and positions).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
from scipy import sparse

from klantbeeld.errors import NotTrainedError

log = logging.getLogger(__name__)

#: Registry of concrete recommender classes by ``kind`` (filled by ``__init_subclass__``).
RECOMMENDERS: dict[str, type[Recommender]] = {}

_PARAMS_FILE = "params.json"
_BLOCK_CELLS = 4_000_000  # users × items scored at once (16 MB of float32)
_SPARSE_BLOCK_USERS = 50_000  # users per block on the sparse-score path
_WIDE_BLOCK = 32  # columns per block of the wide-row top-n threshold


class Recommender:
    """Base class of every item recommender (candidate source).

    The contract
    ------------
    ``fit(user_items) -> self``
        ``user_items`` is a ``scipy.sparse.csr_matrix`` of shape ``(n_users, n_items)``;
        row ``u`` holds user ``u``'s interactions as non-negative confidences (a
        weighted count of views, carts, purchases; see ``interactions.py``). Fitting
        sets attributes ending in ``_`` and returns ``self``. Any randomness is drawn
        from ``random_state`` resolved inside ``fit``: fitting twice on the same data
        gives the same model.
    ``recommend(user_ids, user_items, n=10, exclude=None) -> (ids, scores)``
        ``user_ids`` is an integer array of shape ``(n_req,)`` of row positions.
        ``user_items`` is a ``csr_matrix`` with one row per user position (at least
        ``max(user_ids) + 1`` rows) and one column per item; it is the users' *current*
        history, which may be newer than the history seen by ``fit``: sources that need
        it (item-kNN, EASE, recently viewed, buy again, ALS fold-in) read their input
        from it. Users beyond the rows seen by ``fit``, or with an empty row at fit
        time, are handled without error (ALS folds them in, popularity serves them).
        ``exclude`` is ``None`` or a matrix of the same shape as ``user_items`` whose
        non-zero entries mark items that must never be returned for that user.
        Returns ``ids`` of shape ``(n_req, n)`` and dtype ``int32`` (item positions,
        best first) and ``scores`` of shape ``(n_req, n)`` and dtype ``float32``
        (higher is better; comparable within one recommender only). Where fewer than
        ``n`` items qualify the row is padded with id ``-1`` and score ``-inf``.
        Calling with many users gives the same rows as calling once per user.
    ``save(path)`` / ``Recommender.load(path, mmap=False)``
        A folder with ``params.json`` (class, constructor arguments, fitted scalars)
        and one ``.npy`` file per fitted array, written atomically, read back with
        ``allow_pickle=False`` and optionally memory-mapped. ``load`` returns an
        object whose ``recommend`` output is identical to the saved one's.

    Errors name the argument: ``ValueError("user_items must have a row for every
    user in user_ids ...")``; using an unfitted model raises ``NotTrainedError``.

    Subclasses implement ``fit`` and ``_score_block(user_ids, rows)`` returning dense
    float32 scores of shape ``(len(user_ids), n_items)`` with ``-inf`` for items the
    source does not propose; they list their fitted arrays in ``_arrays`` and their
    fitted scalars in ``_fitted_scalars``.
    """

    kind: ClassVar[str] = "base"
    n_items_: int
    _arrays: ClassVar[tuple[str, ...]] = ()
    _fitted_scalars: ClassVar[tuple[str, ...]] = ("n_items_",)
    #: Fitted arrays that older saved models may lack (loaded as None).
    _optional_arrays: ClassVar[tuple[str, ...]] = ()
    #: True for sources whose scores are sparse (``_score_sparse``), see ``recommend``.
    _sparse_scores: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind != "base":
            RECOMMENDERS[cls.kind] = cls

    # -- parameters ---------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serialisable) as a dict."""
        import inspect

        names = [
            p
            for p in inspect.signature(type(self).__init__).parameters
            if p not in ("self", "args", "kwargs")
        ]
        return {name: _jsonable(getattr(self, name)) for name in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- contract -----------------------------------------------------------------
    def fit(self, user_items: sparse.csr_matrix) -> Self:  # pragma: no cover - abstract
        """Fit on ``user_items`` (see the class docstring); return ``self``."""
        raise NotImplementedError

    def _is_sparse(self) -> bool:
        """True when ``recommend`` takes the sparse path (``_score_sparse``)."""
        return self._sparse_scores

    def _score_block(self, user_ids: np.ndarray, rows: sparse.csr_matrix) -> np.ndarray:
        if self._is_sparse():
            s = self._score_sparse(user_ids, rows, None, None)
            out = np.full(s.shape, -np.inf, dtype=np.float32)
            coo = s.tocoo()
            out[coo.row, coo.col] = coo.data
            return out
        raise NotImplementedError  # pragma: no cover - abstract

    def _score_sparse(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None,
        exclude: sparse.csr_matrix | None,
    ) -> sparse.csr_matrix:
        """Scores of the items the source proposes (stored entries); others are not proposed.

        Implemented by sources with ``_sparse_scores = True``: their ``recommend`` then
        never builds a dense users x items block. Sources that propose few items per user
        (recently viewed, buy again, item-kNN) return all of them; popularity sources
        return a shortlist that provably holds the top-``n`` after ``exclude`` (``n`` None:
        every item).
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def recommend(
        self,
        user_ids: np.ndarray,
        user_items: sparse.csr_matrix,
        n: int = 10,
        exclude: sparse.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items per user (see the class docstring for shapes and dtypes)."""
        self._check_fitted()
        user_ids = check_user_ids(user_ids)
        user_items = check_user_items(user_items, user_ids, self.n_items_)
        if not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if exclude is not None:
            exclude = check_user_items(exclude, user_ids, self.n_items_, name="exclude")
        n_req = len(user_ids)
        ids = np.full((n_req, n), -1, dtype=np.int32)
        scores = np.full((n_req, n), -np.inf, dtype=np.float32)
        if self._is_sparse():
            # sources that propose few items per user: top-n over the non-zeros only
            for start in range(0, n_req, _SPARSE_BLOCK_USERS):
                uid = user_ids[start : start + _SPARSE_BLOCK_USERS]
                ex_rows = exclude[uid] if exclude is not None else None
                s = self._score_sparse(uid, user_items[uid], n, ex_rows)
                if ex_rows is not None:
                    s = _drop_excluded(s, ex_rows)
                i, v = top_n_sparse(s, n)
                ids[start : start + len(uid)] = i
                scores[start : start + len(uid)] = v
            return ids, scores
        block = max(1, _BLOCK_CELLS // max(self.n_items_, 1))
        for start in range(0, n_req, block):
            uid = user_ids[start : start + block]
            s = np.asarray(self._score_block(uid, user_items[uid]), dtype=np.float32)
            if exclude is not None:
                ex = exclude[uid].tocoo()
                s[ex.row[ex.data != 0], ex.col[ex.data != 0]] = -np.inf
            i, v = top_n(s, n)
            ids[start : start + len(uid)] = i
            scores[start : start + len(uid)] = v
        return ids, scores

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotTrainedError(f"{type(self).__name__} is not fitted; call fit first")

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to folder ``path`` atomically; return the path."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            meta = {
                "kind": self.kind,
                "params": self.get_params(),
                "fitted": {k: _jsonable(getattr(self, k)) for k in self._fitted_scalars},
            }
            (tmp / _PARAMS_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            for name in self._arrays:
                value = getattr(self, name, None)
                if value is None and name in self._optional_arrays:
                    continue
                save_array(tmp, name, value)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> Recommender:
        """Read a model written by :meth:`save`; ``mmap`` memory-maps dense arrays."""
        path = Path(path)
        meta = json.loads((path / _PARAMS_FILE).read_text())
        klass = RECOMMENDERS.get(meta["kind"])
        if klass is None:
            raise ValueError(f"path {path} holds an unknown recommender kind {meta['kind']!r}")
        obj = klass(**meta["params"])
        for key, value in meta["fitted"].items():
            setattr(obj, key, value)
        for name in klass._arrays:
            missing = not any(path.glob(f"{name}.*npy"))
            if missing and name in klass._optional_arrays:
                setattr(obj, name, None)  # saved by a version that did not have it
                continue
            setattr(obj, name, load_array(path, name, mmap=mmap))
        obj._after_load()
        return obj

    def _after_load(self) -> None:
        """Hook for subclasses that rebuild helper objects from loaded arrays."""


# -- helpers ---------------------------------------------------------------------------
def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``n`` best columns per row of a dense score matrix, best first.

    Ties are broken by the lower item position, so the result is deterministic.
    Entries equal to ``-inf`` (or NaN) are never returned: their id is ``-1``.

    Parameters
    ----------
    scores : ndarray of float, shape (n_rows, n_items)
    n : int

    Returns
    -------
    ids : ndarray of int32, shape (n_rows, n)
    values : ndarray of float32, shape (n_rows, n)
    """
    scores = np.where(np.isnan(scores), -np.inf, scores).astype(np.float32, copy=False)
    n_rows, n_items = scores.shape
    k = min(n, n_items)
    if n_rows and n_items >= _WIDE_BLOCK * 4 * max(k, 1):
        return _top_n_wide(scores, n, k)
    ids = np.full((n_rows, n), -1, dtype=np.int32)
    vals = np.full((n_rows, n), -np.inf, dtype=np.float32)
    if n_rows == 0:
        return ids, vals
    if k < n_items:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_items), (n_rows, n_items))
    sub = np.take_along_axis(scores, part, 1)
    order = np.lexsort((part, -sub), axis=1)
    ids[:, :k] = np.take_along_axis(part, order, 1)
    vals[:, :k] = np.take_along_axis(sub, order, 1)
    if k < n_items:
        # rows where more than k finite items tie with the k-th value: break ties by position
        kth = vals[:, k - 1 : k]
        mask = (scores >= kth) & np.isfinite(scores)
        for r in np.flatnonzero(mask.sum(axis=1) > k):
            cols = np.flatnonzero(mask[r])
            sel = np.lexsort((cols, -scores[r, cols]))[:k]
            ids[r, :k] = cols[sel]
            vals[r, :k] = scores[r, cols[sel]]
    bad = ~np.isfinite(vals)
    ids[bad] = -1
    vals[bad] = -np.inf
    return ids, vals


def _top_n_wide(scores: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_n`` for wide rows: a threshold from block maxima, then a sparse top-n.

    The ``k``-th largest of the row's block maxima is a lower bound of the row's ``k``-th
    largest score (``k`` blocks each hold an entry at least that large), so every entry
    of the top ``k`` is ``>=`` it; only those entries (a few per block that holds one)
    are sorted. Same result as the partition path, ties included.
    """
    n_rows, n_items = scores.shape
    n_blocks = n_items // _WIDE_BLOCK
    head = scores[:, : n_blocks * _WIDE_BLOCK].reshape(n_rows, n_blocks, _WIDE_BLOCK)
    maxima = head.max(axis=2)
    if n_blocks * _WIDE_BLOCK < n_items:
        maxima = np.hstack([maxima, scores[:, n_blocks * _WIDE_BLOCK :].max(axis=1)[:, None]])
    thresh = -np.partition(-maxima, k - 1, axis=1)[:, k - 1]
    sel = scores >= thresh[:, None]
    sel &= scores > -np.inf
    rows, cols = np.nonzero(sel)
    sub = sparse.csr_matrix(
        (scores[rows, cols], cols, np.r_[0, np.cumsum(sel.sum(axis=1))]), shape=scores.shape
    )
    return top_n_sparse(sub, n)


def top_n_sparse(scores: sparse.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n` over the stored entries of a sparse score matrix (others: not proposed).

    The same result as ``top_n`` on the dense matrix with ``-inf`` for absent entries
    (ties broken by the lower item position, ``-inf``/NaN entries never returned), in
    ``O(nnz log nnz)`` instead of ``O(n_rows * n_items)``.

    Parameters
    ----------
    scores : csr_matrix of float, shape (n_rows, n_items)
    n : int

    Returns
    -------
    ids : ndarray of int32, shape (n_rows, n)
    values : ndarray of float32, shape (n_rows, n)
    """
    m = sparse.csr_matrix(scores)
    m.sum_duplicates()
    n_rows = m.shape[0]
    ids = np.full((n_rows, n), -1, dtype=np.int32)
    vals = np.full((n_rows, n), -np.inf, dtype=np.float32)
    data = m.data.astype(np.float32, copy=False)
    row = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(m.indptr))
    ok = np.isfinite(data)
    row, col, data = row[ok], m.indices[ok], data[ok]
    if len(row) == 0:
        return ids, vals
    # canonical CSR: entries already ordered by (row, col); a stable sort by (row, -score)
    # keeps the lower column first among ties
    order = np.lexsort((-data, row))
    row, col, data = row[order], col[order], data[order]
    starts = np.r_[0, np.cumsum(np.bincount(row, minlength=n_rows))[:-1]]
    rank = np.arange(len(row)) - starts[row]
    keep = rank < n
    ids[row[keep], rank[keep]] = col[keep]
    vals[row[keep], rank[keep]] = data[keep]
    return ids, vals


def _drop_excluded(scores: sparse.csr_matrix, exclude: sparse.csr_matrix) -> sparse.csr_matrix:
    """``scores`` without the stored entries where ``exclude`` is non-zero (same shape)."""
    ex = sparse.csr_matrix(exclude).tocoo()
    nz = ex.data != 0
    if not nz.any():
        return scores
    s = sparse.csr_matrix(scores).tocoo()
    width = np.int64(s.shape[1])
    keys = s.row.astype(np.int64) * width + s.col
    banned = ex.row[nz].astype(np.int64) * width + ex.col[nz]
    keep = ~np.isin(keys, banned)
    return sparse.csr_matrix(
        (s.data[keep], (s.row[keep], s.col[keep])), shape=s.shape, dtype=np.float32
    )


def check_user_ids(user_ids: Any) -> np.ndarray:
    """Validate ``user_ids`` as a 1-d array of non-negative integers."""
    arr = np.asarray(user_ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"user_ids must be a 1-d array of integers, got {arr.dtype} {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError("user_ids must be non-negative row positions")
    return arr.astype(np.int64, copy=False)


def check_user_items(
    user_items: Any, user_ids: np.ndarray, n_items: int, name: str = "user_items"
) -> sparse.csr_matrix:
    """Validate a users × items matrix against ``user_ids`` and the fitted item count."""
    if not sparse.issparse(user_items):
        raise ValueError(f"{name} must be a scipy.sparse csr_matrix, got {type(user_items)}")
    user_items = sparse.csr_matrix(user_items)
    if user_items.shape[1] != n_items:
        raise ValueError(
            f"{name} must have {n_items} columns (one per fitted item), got {user_items.shape[1]}"
        )
    if user_ids.size and user_items.shape[0] <= user_ids.max():
        raise ValueError(
            f"{name} must have a row for every user in user_ids "
            f"(max id {int(user_ids.max())}, rows {user_items.shape[0]})"
        )
    return user_items


def check_fit_input(user_items: Any) -> sparse.csr_matrix:
    """Validate the matrix given to ``fit``: sparse, 2-d, finite, non-negative."""
    if not sparse.issparse(user_items):
        raise ValueError(f"user_items must be a scipy.sparse csr_matrix, got {type(user_items)}")
    m = sparse.csr_matrix(user_items, dtype=np.float32)
    if m.shape[1] == 0:
        raise ValueError("user_items must have at least one item column")
    if m.nnz and (not np.isfinite(m.data).all() or m.data.min() < 0):
        raise ValueError("user_items must hold finite, non-negative confidences")
    return m


def save_array(folder: Path, name: str, value: Any) -> None:
    """Save ``value`` (dense ndarray or csr_matrix) as ``.npy`` files under ``folder``."""
    if sparse.issparse(value):
        m = sparse.csr_matrix(value)
        for part in ("data", "indices", "indptr"):
            np.save(folder / f"{name}.{part}.npy", getattr(m, part), allow_pickle=False)
        np.save(folder / f"{name}.shape.npy", np.asarray(m.shape, dtype=np.int64))
    else:
        np.save(folder / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)


def load_array(folder: Path, name: str, mmap: bool = False) -> Any:
    """Load an array written by :func:`save_array` (``allow_pickle=False``)."""
    mode: Literal["r"] | None = "r" if mmap else None
    dense = folder / f"{name}.npy"
    if dense.exists():
        return np.load(dense, mmap_mode=mode, allow_pickle=False)
    parts = [
        np.load(folder / f"{name}.{p}.npy", allow_pickle=False)
        for p in ("data", "indices", "indptr")
    ]
    shape = tuple(np.load(folder / f"{name}.shape.npy", allow_pickle=False))
    return sparse.csr_matrix(tuple(parts), shape=shape)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value
