"""MLflow pyfunc wrapper of :class:`NextBestOffers` (registered as ``klantbeeld-recommender``)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from features import contract as c

if TYPE_CHECKING:
    from models.recommender.next_best import NextBestOffers

NBO_ARTIFACT = "nbo"
#: Columns of the pyfunc's output, one row per (customer, recommended item).
OUTPUT_COLUMNS = [c.CUSTOMER_ID, c.ITEM_ID, "score", "source", "reason"]
DEFAULT_N = 10


class NextBestOffersPyfunc(PythonModel):
    """``predict(DataFrame[customer_id]) -> ranked candidates`` (top ``n`` per customer).

    The fitted object lives in the artifact ``nbo`` (a :meth:`NextBestOffers.save` folder).
    ``params={"n": 10}`` sets the number of items per customer.
    """

    nbo: NextBestOffers

    def load_context(self, context) -> None:
        """Load the saved :class:`NextBestOffers` (memory-mapped) from the ``nbo`` artifact."""
        from models.recommender.next_best import NextBestOffers

        self.nbo = NextBestOffers.load(context.artifacts[NBO_ARTIFACT], mmap=True)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        """Top ``params["n"]`` (default 10) offers per customer, best first."""
        n = int((params or {}).get("n", DEFAULT_N))
        ranked = self.nbo.rank(self.nbo.candidates(model_input[c.CUSTOMER_ID].astype(str).tolist()))
        ranked = ranked.groupby(c.CUSTOMER_ID, sort=False).head(n)
        return ranked[OUTPUT_COLUMNS].reset_index(drop=True)


def log_next_best_offers(
    nbo: NextBestOffers, customer_ids: Sequence[str], name: str = "model"
) -> Any:
    """Log ``nbo`` as a pyfunc model in the active MLflow run, with signature and example.

    Parameters
    ----------
    nbo : NextBestOffers
        Fitted (and refreshed) next-best-offers object.
    customer_ids : sequence of str
        A few customer ids: the input example, and with the offers made to them the
        signature (input ``customer_id``; output :data:`OUTPUT_COLUMNS`; param ``n``).
    name : str
        Artifact name of the model in the run.

    Returns
    -------
    mlflow.models.model.ModelInfo
    """
    import mlflow
    from mlflow.models import infer_signature

    from models.pyfunc import model_code_paths, pinned_requirements

    example = pd.DataFrame({c.CUSTOMER_ID: [str(i) for i in customer_ids]})
    wrapper = NextBestOffersPyfunc()
    wrapper.nbo = nbo
    signature = infer_signature(
        example, wrapper.predict(None, example, {"n": DEFAULT_N}), params={"n": DEFAULT_N}
    )
    pip = pinned_requirements("numpy", "pandas", "scipy", "lightgbm", "implicit", "threadpoolctl")
    with tempfile.TemporaryDirectory() as tmp:
        folder = nbo.save(Path(tmp) / NBO_ARTIFACT)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=NextBestOffersPyfunc(),
            artifacts={NBO_ARTIFACT: str(folder)},
            signature=signature,
            input_example=example,
            pip_requirements=pip,
            code_paths=model_code_paths(),
        )
