"""MLflow pyfunc wrapper of :class:`NextBestOffers` (registered as ``klantbeeld-recommender``)."""

from __future__ import annotations

import pandas as pd
from mlflow.pyfunc import PythonModel

from features import contract as c


class NextBestOffersPyfunc(PythonModel):
    """``predict(DataFrame[customer_id]) -> ranked candidates`` (top ``n`` per customer).

    The fitted object lives in the artifact ``nbo`` (a :meth:`NextBestOffers.save` folder).
    ``params={"n": 10}`` sets the number of items per customer.
    """

    def load_context(self, context) -> None:
        from models.recommender.next_best import NextBestOffers

        self.nbo = NextBestOffers.load(context.artifacts["nbo"], mmap=True)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        n = int((params or {}).get("n", 10))
        ranked = self.nbo.rank(self.nbo.candidates(model_input[c.CUSTOMER_ID].astype(str).tolist()))
        ranked = ranked.groupby(c.CUSTOMER_ID, sort=False).head(n)
        return ranked[[c.CUSTOMER_ID, c.ITEM_ID, "score", "source", "reason"]]
