"""Synthetic demo shop with a known truth: generator and oracle.

:func:`generate_demo_shop` writes a contract-conform shop simulated from hidden
per-customer propensities; the oracle functions (:mod:`features.demo_shop.truth`) compute
from the same hidden state the true probabilities that models are compared against.
See ``docs/demo-shop.md``.
"""

from features.demo_shop.truth import (
    oracle_churn_probability,
    oracle_purchase_probability,
    oracle_repurchase_distribution,
    true_repurchase_cycles,
)
from features.demo_shop.writer import DemoShopSummary, generate_demo_shop, is_demo_shop

__all__ = [
    "DemoShopSummary",
    "generate_demo_shop",
    "is_demo_shop",
    "oracle_churn_probability",
    "oracle_purchase_probability",
    "oracle_repurchase_distribution",
    "true_repurchase_cycles",
]
