"""klantbeeld: predictive scores and next-best-offers for customer data platforms.

The distribution ships five import packages, one per stage of the flow:

- ``features``  data contract, demo shop, point-in-time feature snapshots, labels
- ``models``    model families (fit/predict objects, MLflow pyfunc wrappers)
- ``training``  backtests, metrics, plots, MLflow logging and promotion
- ``serving``   business rules, batch scoring and exports
- ``klantbeeld`` settings, errors and the command-line interface
"""

__version__ = "0.1.0"
