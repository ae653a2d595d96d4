"""MLflow pyfunc wrapper of :class:`models.clv.CLVModel`.

The loaded pyfunc takes customer features (:func:`models.inputs.model_inputs` of a
snapshot; extra columns ignored) and returns one row per input row with
``expected_purchases`` (orders in the model's horizon), ``expected_spend`` (EUR per
order) and ``clv`` (EUR), NaN for customers without an order before T.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PyFuncModel, PythonModel

from models.clv import CLVModel

MODEL_ARTIFACT = "clv"


class CLVPyfunc(PythonModel):
    """pyfunc model around a :class:`CLVModel` saved with :meth:`CLVModel.save`."""

    def __init__(self) -> None:
        self.model: CLVModel | None = None

    def load_context(self, context: Any) -> None:
        """Load the model from the ``clv`` artifact folder."""
        self.model = CLVModel.load(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Expected purchases, spend and CLV per row (see the module docstring)."""
        if self.model is None:
            self.load_context(context)
        if self.model is None:
            raise ValueError("CLV pyfunc has no model; load_context failed")
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.model.predict_frame(model_input)


def log_clv_model(model: CLVModel, input_example: pd.DataFrame, name: str = "model") -> Any:
    """Log ``model`` as a pyfunc in the active MLflow run, with signature and input example.

    Parameters
    ----------
    model : CLVModel
        Fitted model.
    input_example : pandas.DataFrame
        A few population rows (they must include ``orders_total``).
    name : str
        Artifact name of the model in the run.

    Returns
    -------
    mlflow.models.model.ModelInfo
    """
    from mlflow.models import infer_signature

    from models.clv import ORDERS
    from models.pyfunc import model_code_paths, pinned_requirements

    cols = list(dict.fromkeys([*model.feature_names_, ORDERS]))
    example = input_example[cols].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # integer-column hint: counts are ints
        signature = infer_signature(example, model.predict_frame(example))
    pip = pinned_requirements("lightgbm", "scipy", "pandas", "numpy")
    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / MODEL_ARTIFACT)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=CLVPyfunc(),
            artifacts={MODEL_ARTIFACT: str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=pip,
            code_paths=model_code_paths(),  # loads without the repository (issue #15)
        )


def unwrap_clv_model(model: PyFuncModel) -> CLVModel:
    """Return the :class:`CLVModel` inside a loaded pyfunc model."""
    inner = model.unwrap_python_model()
    if not isinstance(inner, CLVPyfunc) or inner.model is None:
        raise ValueError("model must be a loaded klantbeeld CLVPyfunc model")
    return inner.model
