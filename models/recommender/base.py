"""The recommender contract, stated once.

Every candidate source (popularity, ALS, item-kNN, EASE, recently viewed, buy again)
subclasses :class:`Recommender`. Users and items are integer row/column positions of a
``scipy.sparse.csr_matrix`` (see :mod:`models.recommender.interactions` for the maps
between shop ids and positions).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator

from klantbeeld.atomic import atomic_directory
from klantbeeld.errors import NotTrainedError

log = logging.getLogger(__name__)

#: Registry of concrete recommender classes by ``kind`` (filled by ``__init_subclass__``).
RECOMMENDERS: dict[str, type[Recommender]] = {}

_PARAMS_FILE = "params.json"
_BLOCK_CELLS = 4_000_000  # users × items scored at once (16 MB of float32)
_SPARSE_BLOCK_USERS = 50_000  # users per block on the sparse-score path
_WIDE_BLOCK = 8  # columns per group of the wide-row top-n threshold


class Recommender(BaseEstimator):
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

    # -- parameters (get_params / set_params from sklearn's BaseEstimator) ---------
    def _json_params(self) -> dict[str, Any]:
        """The constructor arguments as JSON-serialisable values (for ``params.json``)."""
        return {k: _jsonable(v) for k, v in self.get_params(deep=False).items()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._json_params().items())
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

    def _top_direct(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int,
        exclude: sparse.csr_matrix | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The sparse path's top-``n`` ``(ids, scores)`` when a source ranks them itself.

        Default ``None``: ``recommend`` ranks the stored entries of ``_score_sparse``. A
        source whose scoring already yields its top-``n`` per user (ALS over its candidate
        pool, exclusions applied) returns them here, identical to that ranking.
        """
        return None

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
                direct = self._top_direct(uid, user_items[uid], n, ex_rows)
                if direct is not None:
                    i, v = direct
                else:
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
        with atomic_directory(path) as tmp:
            meta = {
                "kind": self.kind,
                "params": self._json_params(),
                "fitted": {k: _jsonable(getattr(self, k)) for k in self._fitted_scalars},
            }
            (tmp / _PARAMS_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            for name in self._arrays:
                value = getattr(self, name, None)
                if value is None and name in self._optional_arrays:
                    continue
                save_array(tmp, name, value)
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
    Entries equal to ``-inf`` (or NaN, ``+inf``) are never returned: their id is ``-1``.

    Parameters
    ----------
    scores : ndarray of float, shape (n_rows, n_items)
    n : int

    Returns
    -------
    ids : ndarray of int32, shape (n_rows, n)
    values : ndarray of float32, shape (n_rows, n)
    """
    scores = np.asarray(scores, dtype=np.float32)
    n_rows, n_items = scores.shape
    k = min(n, n_items)
    if n_rows and n_items >= _WIDE_BLOCK * 4 * max(k, 1):
        return _top_n_wide(scores, n, k)
    ids = np.full((n_rows, n), -1, dtype=np.int32)
    vals = np.full((n_rows, n), -np.inf, dtype=np.float32)
    if n_rows == 0 or k == 0:
        return ids, vals
    cols = np.broadcast_to(np.arange(n_items, dtype=np.int64), scores.shape)
    ids[:, :k], vals[:, :k] = _top_keys(desc_keys(scores, cols), k)
    return ids, vals


def desc_keys(values: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """int64 sort keys whose ascending order is: value descending, then column ascending.

    The high 32 bits hold the float32 value mapped to an order-reversing integer, the
    low 32 bits the column, so one integer sort (or partition) orders ``(-value, col)``
    exactly -- ties included -- and both can be read back (:func:`decode_keys`).
    Non-finite values get :data:`PAD_KEY` (they sort last and are never returned).
    ``-0.0`` is read as ``+0.0``.

    Parameters
    ----------
    values : ndarray of float (cast to float32)
    cols : ndarray of int, same shape, ``0 <= col < 2**31``

    Returns
    -------
    ndarray of int64, same shape
    """
    v = np.asarray(values, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    i = v.view(np.int32)
    mono = i ^ ((i >> 31) & np.int32(0x7FFFFFFF))  # ascending with the value
    keys = (~mono).astype(np.int64)
    keys <<= 32
    keys |= cols
    keys[~np.isfinite(v)] = PAD_KEY
    return keys


def decode_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns (int32, ``-1`` for pads) and values (float32, ``-inf`` for pads) of keys."""
    pad = keys == PAD_KEY
    cols = (keys & 0xFFFFFFFF).astype(np.int32)
    mono = ~((keys >> 32).astype(np.int32))
    vals = (mono ^ ((mono >> 31) & np.int32(0x7FFFFFFF))).view(np.float32)
    cols[pad] = -1
    vals[pad] = -np.inf
    return cols, vals


#: Sort key of an empty slot (after every real key).
PAD_KEY = np.iinfo(np.int64).max


def _top_keys(keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest keys per row, sorted, decoded (``k <= keys.shape[1]``)."""
    keys = np.partition(keys, k - 1, axis=1)[:, :k] if k < keys.shape[1] else keys.copy()
    keys.sort(axis=1)
    return decode_keys(keys)


def _top_n_wide(scores: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_n`` for wide rows: only the ``k`` column groups with the largest maxima are ranked.

    The columns are split into ``G = n_items // _WIDE_BLOCK`` strided groups (column
    ``j`` in group ``j % G``; the last ``n_items % _WIDE_BLOCK`` columns are ranked
    always). The ``k``-th largest group maximum ``t`` of a row is a lower bound of its
    ``k``-th largest score (``k`` groups each hold an entry at least that large), so every
    entry of the top ``k`` lies in a group whose maximum is ``>= t``. When exactly ``k``
    groups reach ``t`` (the usual case) only those are ranked; rows where more groups tie
    at ``t`` are ranked in full. Same result as the partition path, ties included.
    """
    n_rows, n_items = scores.shape
    groups = n_items // _WIDE_BLOCK
    width = groups * _WIDE_BLOCK
    head = scores[:, :width].reshape(n_rows, _WIDE_BLOCK, groups)
    maxima = head.max(axis=1)
    tail_bad = width < n_items and not np.isfinite(scores[:, width:]).all()
    if np.isnan(maxima).any() or np.isposinf(maxima).any() or tail_bad:
        # NaN and +inf are never returned: as -inf they cannot distort the thresholds
        scores = np.where(np.isfinite(scores), scores, -np.inf).astype(np.float32)
        head = scores[:, :width].reshape(n_rows, _WIDE_BLOCK, groups)
        maxima = head.max(axis=1)
    grp = np.argpartition(-maxima, k - 1, axis=1)[:, :k]
    thresh = np.take_along_axis(maxima, grp, 1).min(axis=1)
    tied = ((maxima >= thresh[:, None]).sum(axis=1) > k) & (thresh > -np.inf)
    member = np.arange(_WIDE_BLOCK)[None, :, None]
    vals = head[np.arange(n_rows)[:, None, None], member, grp[:, None, :]].reshape(n_rows, -1)
    cols = (member * groups + grp[:, None, :]).reshape(n_rows, -1)
    if width < n_items:
        vals = np.hstack([vals, scores[:, width:]])
        tail = np.broadcast_to(np.arange(width, n_items), (n_rows, n_items - width))
        cols = np.hstack([cols, tail])
    ids = np.full((n_rows, n), -1, dtype=np.int32)
    out = np.full((n_rows, n), -np.inf, dtype=np.float32)
    ids[:, :k], out[:, :k] = _top_keys(desc_keys(vals, cols), k)
    for r in np.flatnonzero(tied):  # rare: more than k groups reach the threshold
        full = desc_keys(scores[r : r + 1], np.arange(n_items)[None, :])
        ids[r, :k], out[r, :k] = (a[0] for a in _top_keys(full, k))
    return ids, out


#: Rows of at most this many stored entries are ranked as a padded dense block.
_NARROW_ROW = 512
_PAD_ROWS = 8_192  # rows per padded block


def top_n_sparse(scores: sparse.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n` over the stored entries of a sparse score matrix (others: not proposed).

    The same result as ``top_n`` on the dense matrix with ``-inf`` for absent entries
    (ties broken by the lower item position, non-finite entries never returned), in
    ``O(nnz log n)``: each row's entries are packed into a padded block of sort keys
    (:func:`desc_keys`) and partitioned per row; rows with more than ``_NARROW_ROW``
    entries are sorted on their own.

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
    lens = np.diff(m.indptr)
    row = np.repeat(np.arange(n_rows, dtype=np.int64), lens)
    col = m.indices
    ok = np.isfinite(data)
    if not ok.all():
        row, col, data = row[ok], col[ok], data[ok]
        lens = np.bincount(row, minlength=n_rows)
    if len(row) == 0:
        return ids, vals
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    slot = np.arange(len(row)) - starts[row]
    keys = desc_keys(data, col)
    narrow = lens <= _NARROW_ROW
    for lo in range(0, n_rows, _PAD_ROWS):
        hi = min(lo + _PAD_ROWS, n_rows)
        rs = np.arange(lo, hi)[narrow[lo:hi]]
        if len(rs) == 0:
            continue
        width = int(lens[rs].max())
        if width == 0:
            continue
        a, b = starts[lo], starts[hi - 1] + lens[hi - 1]
        sel = narrow[row[a:b]]
        block = np.full((hi - lo, width), PAD_KEY, dtype=np.int64)
        block[row[a:b][sel] - lo, slot[a:b][sel]] = keys[a:b][sel]
        k = min(n, width)
        ids[lo:hi, :k], vals[lo:hi, :k] = _top_keys(block, k)
    for r in np.flatnonzero(~narrow):
        a, b = starts[r], starts[r] + lens[r]
        k = min(n, b - a)
        ids[r, :k], vals[r, :k] = (x[0] for x in _top_keys(keys[None, a:b], k))
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
