"""MLflow pyfunc wrapper: a saved :class:`models.base.Scorer` served as a pyfunc model.

The loaded model takes a pandas DataFrame of customer features
(:func:`models.inputs.model_inputs` of a snapshot; extra columns such as ``customer_id``
are ignored) and returns the calibrated
probability per row as a float64 numpy array.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, cast

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel, PythonModel

from models.base import Scorer

log = logging.getLogger(__name__)

SCORER_ARTIFACT = "scorer"
SCORER_CLASSES: dict[str, type[Scorer]] = {}

#: The import packages of this repository that a logged pyfunc model imports when it
#: loads (``models`` and what it imports). They ship with the model as ``code_paths``,
#: so it loads where klantbeeld is not installed (``mlflow models serve`` on a machine
#: that has only the registry). ``models`` must not import ``training`` or ``serving``.
CODE_PACKAGES = ("models", "features", "klantbeeld")


def model_code_paths() -> list[str]:
    """Folders of :data:`CODE_PACKAGES`, for ``mlflow.pyfunc.log_model(code_paths=...)``.

    Returns
    -------
    list of str
        One absolute package folder per name; MLflow copies each under the model's
        ``code/`` folder and puts that folder first on ``sys.path`` when it loads.
    """
    import importlib

    out = []
    for name in CODE_PACKAGES:
        init = importlib.import_module(name).__file__
        if init is None:
            raise ValueError(f"package {name!r} has no __init__.py to ship with the model")
        out.append(str(Path(init).parent))
    return out


def pinned_requirements(*distributions: str) -> list[str]:
    """``name==version`` of ``mlflow`` and each distribution, as installed here.

    Parameters
    ----------
    *distributions : str
        PyPI distribution names the model imports when it loads (``"lightgbm"``, ...).

    Returns
    -------
    list of str
        ``pip_requirements`` of a logged model; klantbeeld itself is never listed (its
        code ships as :func:`model_code_paths`).
    """
    from importlib.metadata import version

    return [f"mlflow=={mlflow.__version__}", *(f"{d}=={version(d)}" for d in distributions)]


def _scorer_class(name: str) -> type[Scorer]:
    from models.baselines import LogisticBaseline, RFMBaseline
    from models.churn import ChurnModel
    from models.conversion_intent import ConversionIntentModel
    from models.lgbm import GradientBoostedScorer

    classes: tuple[type[Scorer], ...] = (
        ConversionIntentModel,
        ChurnModel,
        GradientBoostedScorer,
        RFMBaseline,
        LogisticBaseline,
        *SCORER_CLASSES.values(),
    )
    known = {cls.__name__: cls for cls in classes}
    if name not in known:
        raise ValueError(f"scorer class must be one of {sorted(known)}, got {name!r}")
    return known[name]


class ScorerPyfunc(PythonModel):
    """pyfunc model around a scorer saved with :meth:`models.base.Scorer.save`.

    Parameters
    ----------
    scorer_class : str
        Class name of the saved scorer, e.g. ``"ChurnModel"``.
    """

    def __init__(self, scorer_class: str) -> None:
        self.scorer_class = scorer_class
        self.scorer: Scorer | None = None

    def load_context(self, context: Any) -> None:
        """Load the scorer from the model's ``scorer`` artifact directory."""
        self.scorer = _scorer_class(self.scorer_class).load(
            Path(context.artifacts[SCORER_ARTIFACT])
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params=None) -> np.ndarray:
        """Calibrated probability per row of ``model_input`` (float64)."""
        if self.scorer is None:
            self.load_context(context)
        scorer = cast(Scorer, self.scorer)
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return scorer.predict_proba(model_input)


def log_scorer(
    scorer: Scorer,
    input_example: pd.DataFrame,
    name: str = "model",
    workdir: Path | None = None,
) -> Any:
    """Log ``scorer`` as a pyfunc model in the active run, with signature and input example.

    Parameters
    ----------
    scorer : Scorer
        Fitted scorer.
    input_example : pandas.DataFrame
        A few feature rows (``scorer.feature_names_`` columns); also defines the signature.
    name : str
        Artifact name of the model in the run.
    workdir : Path, optional
        Scratch folder for the saved scorer (default a temporary folder).

    Returns
    -------
    mlflow.models.model.ModelInfo
    """
    import tempfile

    from mlflow.models import infer_signature

    example = input_example[scorer.feature_names_].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # integer-column hint: counts are ints
        signature = infer_signature(example, scorer.predict_proba(example))
    pip = pinned_requirements("lightgbm", "scikit-learn", "scipy", "pandas", "numpy")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / SCORER_ARTIFACT
        scorer.save(path)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ScorerPyfunc(type(scorer).__name__),
            artifacts={SCORER_ARTIFACT: str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=pip,
            code_paths=model_code_paths(),
        )


def unwrap_scorer(model: PyFuncModel) -> Scorer:
    """Return the :class:`Scorer` inside a loaded pyfunc model (for explanations)."""
    inner = model.unwrap_python_model()
    if not isinstance(inner, ScorerPyfunc) or inner.scorer is None:
        raise ValueError("model must be a loaded klantbeeld ScorerPyfunc model")
    return inner.scorer
