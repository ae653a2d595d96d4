"""Batch-score columns of the expected-purchases / CLV champion.

:func:`training.batch_score.score_customers` adds, when ``klantbeeld-clv`` has a champion,
``expected_purchases_<H>d`` (orders expected in the H days after T), ``clv_<H>d`` (expected
revenue in those days, EUR, undiscounted) and ``clv_model_version``, with H the horizon
the champion was trained for. Customers without an order before T get nulls (NaN).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from models.clv import CLV, EXPECTED_PURCHASES

log = logging.getLogger(__name__)

MODEL = "clv"


def column_names(horizon_days: int) -> tuple[str, str]:
    """``("expected_purchases_<H>d", "clv_<H>d")`` for a horizon of ``horizon_days``."""
    return f"{EXPECTED_PURCHASES}_{int(horizon_days)}d", f"{CLV}_{int(horizon_days)}d"


def load_clv_champion() -> tuple[int, Any] | None:
    """The champion of ``klantbeeld-clv`` as ``(version, CLVModel)``, or None without one.

    Call :func:`training.tracking.configure_mlflow` first.
    """
    from klantbeeld.errors import NotTrainedError
    from models.clv_pyfunc import unwrap_clv_model
    from training import registry

    try:
        version, pyfunc = registry.load_champion(MODEL)
    except NotTrainedError:
        log.warning("no champion for %s; its columns are left out", MODEL)
        return None
    return version, unwrap_clv_model(pyfunc)


def clv_columns(inputs: pd.DataFrame, version: int, model: Any) -> dict[str, pa.Array]:
    """The CLV columns for the rows of ``inputs`` (model inputs of a snapshot, in order).

    Parameters
    ----------
    inputs : pandas.DataFrame
        :func:`models.inputs.model_inputs` of the snapshot at T.
    version : int
        Registered version of ``model``.
    model : models.clv.CLVModel
        The champion.

    Returns
    -------
    dict of column name to pyarrow.Array
        See the module docstring (float64 with nulls outside the population; int32).
    """
    pred = model.predict_frame(inputs)
    purchases, clv = column_names(model.horizon_days)
    out: dict[str, pa.Array] = {}
    for name, col in ((purchases, EXPECTED_PURCHASES), (clv, CLV)):
        v = pred[col].to_numpy(dtype=np.float64)
        out[name] = pa.array(v, pa.float64(), mask=np.isnan(v))
    out[f"{MODEL}_model_version"] = pa.array(np.full(len(inputs), version, np.int32))
    return out
