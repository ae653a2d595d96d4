"""Training: backtest splits, metrics, plots, MLflow tracking and registry, training jobs.

Notebook entry points: :func:`train_model` and :func:`training.batch_score.score_customers`.
Nothing is imported eagerly; heavy modules load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.jobs import TrainingResult, train_model

__all__ = ["TrainingResult", "train_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from training import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
