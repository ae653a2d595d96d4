"""The contract every binary customer scorer follows (conversion intent, churn, baselines)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

TOP_UP = "top_up"
TOP_DOWN = "top_down"


class Scorer(ABC):
    """A model that turns one row of customer features into a calibrated probability.

    The contract (checked for every implementation by ``tests/test_scorers.py``):

    ``fit(X, y, X_valid, y_valid) -> self``
        ``X`` is a pandas DataFrame, one row per training example (customer at a cutoff),
        with feature columns (float/int/bool, NaN allowed); an implementation may ignore
        columns it cannot use (e.g. strings and categoricals) and says so. ``y`` is
        0/1 of length ``len(X)``. ``X_valid``/``y_valid`` come from a *later* period and
        are used for early stopping and probability calibration, never for the trees'
        or coefficients' fit. Sets ``feature_names_`` (list[str], the pinned feature list)
        and returns ``self``. ``random_state`` is resolved inside ``fit``: fitting twice
        on the same data gives byte-identical saved models.
    ``predict_proba(X) -> numpy.ndarray``
        float64 array of shape ``(len(X),)``: calibrated probability of label 1 per row.
        Columns are selected by ``feature_names_``; extra columns are ignored, missing
        ones are treated as missing values (NaN). A row's score never depends on the other
        rows in ``X`` (batch equals single).
    ``explain(X, k=3) -> pandas.DataFrame``
        Same index as ``X``; columns ``top_up`` and ``top_down``: lists of up to ``k``
        feature names pushing this row's score up (largest positive contribution first) or
        down (most negative first).
    ``save(path)`` / ``Scorer.load(path)``
        ``path`` is a directory written atomically (temp folder, then rename); a loaded
        model predicts exactly what the saved one did.
    """

    feature_names_: list[str]

    @abstractmethod
    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray | pd.Series,
        X_valid: pd.DataFrame,
        y_valid: np.ndarray | pd.Series,
    ) -> Self:
        """Fit on ``(X, y)``, stop and calibrate on ``(X_valid, y_valid)``; return self."""

    @abstractmethod
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of label 1 per row, float64 of shape ``(len(X),)``."""

    @abstractmethod
    def explain(self, X: pd.DataFrame, k: int = 3) -> pd.DataFrame:
        """Top-``k`` features pushing each row's score up and down (see class docstring)."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the fitted model to directory ``path`` atomically."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""

    def _check_fitted(self) -> None:
        from klantbeeld.errors import NotTrainedError

        if not hasattr(self, "feature_names_"):
            raise NotTrainedError(f"{type(self).__name__} is not fitted; call fit first")


def check_xy(X: pd.DataFrame, y: np.ndarray | pd.Series, name: str = "X") -> np.ndarray:
    """Validate a feature frame and its labels; return ``y`` as an int8 array."""
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(X).__name__}")
    y_arr = np.asarray(y).ravel()
    if y_arr.shape[0] != len(X):
        raise ValueError(f"{name} and its labels must have 1 label for every row")
    if not np.isin(y_arr, (0, 1)).all():
        raise ValueError(f"labels of {name} must be 0 or 1")
    if len(np.unique(y_arr)) < 2:
        raise ValueError(f"labels of {name} must contain both classes")
    return y_arr.astype(np.int8)


def directory_hash(path: Path) -> str:
    """SHA-256 over the names and bytes of every file under ``path`` (sorted)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def top_k_names(contrib: np.ndarray, names: list[str], k: int) -> tuple[list, list]:
    """Per row, the ``k`` names with the largest positive and most negative contributions.

    Parameters
    ----------
    contrib : numpy.ndarray
        ``(n_rows, n_features)`` contributions to the score (logit units or similar).
    names : list of str
        Feature names, one per column of ``contrib``.

    Returns
    -------
    (list of list of str, list of list of str)
        ``top_up`` and ``top_down`` per row; zero contributions are left out.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    arr = np.asarray(names, dtype=object)
    kk = min(k, contrib.shape[1])
    # stable ordering: ties broken by feature position
    up_idx = np.argsort(-contrib, axis=1, kind="stable")[:, :kk]
    down_idx = np.argsort(contrib, axis=1, kind="stable")[:, :kk]
    up_val = np.take_along_axis(contrib, up_idx, axis=1)
    down_val = np.take_along_axis(contrib, down_idx, axis=1)
    ups = [arr[i][v > 0].tolist() for i, v in zip(up_idx, up_val, strict=True)]
    downs = [arr[i][v < 0].tolist() for i, v in zip(down_idx, down_val, strict=True)]
    return ups, downs
