"""What each model is: fit/predict objects following scikit-learn conventions, and MLflow
pyfunc wrappers. One module per model family; the contract of binary scorers is
:class:`models.base.Scorer`."""
