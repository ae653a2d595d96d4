"""MLflow pyfunc wrapper of :class:`models.repurchase_timing.RepurchaseTimingModel`.

The loaded pyfunc takes the pair features of :func:`models.repurchase_timing.pair_features`
(``customer_id`` and the pair key are carried over when present) and returns one row per
pair: ``p_week_1..p_week_W``, ``p_none``, ``p_within_horizon``, ``expected_days``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PyFuncModel, PythonModel

from models.repurchase_timing import RepurchaseTimingModel, pair_key

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "repurchase_timing"


class RepurchasePyfunc(PythonModel):
    """pyfunc model around a saved :class:`RepurchaseTimingModel`.

    Parameters
    ----------
    level : {"item", "category"}
        Pair level the model was trained on (decides the key column).
    """

    def __init__(self, level: str = "item") -> None:
        self.level = level
        self.model: RepurchaseTimingModel | None = None

    def load_context(self, context: Any) -> None:
        """Load the hazard model from the ``repurchase_timing`` artifact folder."""
        self.model = RepurchaseTimingModel.load(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Weekly distribution and expected days per pair (see the module docstring)."""
        if self.model is None:
            self.load_context(context)
        assert self.model is not None
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        keys = [k for k in ("customer_id", pair_key(self.level)) if k in model_input.columns]
        return self.model.predict_frame(model_input, keys=keys)


def log_repurchase_model(
    model: RepurchaseTimingModel,
    input_example: pd.DataFrame,
    level: str,
    name: str = "model",
) -> Any:
    """Log ``model`` as a pyfunc in the active MLflow run, with signature and input example.

    Returns
    -------
    mlflow.models.model.ModelInfo
    """
    from mlflow.models import infer_signature

    from models.pyfunc import model_code_paths, pinned_requirements

    example = input_example[model.feature_names_].reset_index(drop=True)
    signature = infer_signature(example, model.predict_frame(example))
    pip = pinned_requirements("lightgbm", "scipy", "pandas", "numpy")
    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / MODEL_ARTIFACT)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=RepurchasePyfunc(level),
            artifacts={MODEL_ARTIFACT: str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=pip,
            code_paths=model_code_paths(),
        )


def unwrap_repurchase_model(model: PyFuncModel) -> tuple[RepurchaseTimingModel, str]:
    """Return the hazard model inside a loaded pyfunc and its pair level."""
    inner = model.unwrap_python_model()
    if not isinstance(inner, RepurchasePyfunc) or inner.model is None:
        raise ValueError("model must be a loaded klantbeeld RepurchasePyfunc model")
    return inner.model, inner.level
