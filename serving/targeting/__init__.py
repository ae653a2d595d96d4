"""Targeting: choose score thresholds for audiences from the last backtest's gain curve.

:mod:`serving.targeting.threshold` picks the threshold for a goal,
:mod:`serving.targeting.curve_source` reads the curve the training job logged in MLflow and
:mod:`serving.targeting.report` writes the JSON report and the PNG plot.
"""
