"""Choose each recipient's best-matching content block from their category affinity.

A placement maps content blocks to categories, e.g. ``baking: [baking, kitchen]``,
``toys: [toys, baby]``. A recipient's score for a block is the sum of their affinity
weights (purchase 3, add-to-cart 2, product view 1 over the affinity window) on the block's
categories; the block with the highest score wins, ties go to the block declared first,
and recipients with no affinity to any mapped category (or unknown customers) get the
placement's ``default_content_block``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features import contract as c
from serving.context import WEIGHT, RecContext
from serving.placements import Placement


def block_matrix(
    categories: pd.Index, blocks: Mapping[str, Sequence[str]]
) -> tuple[list[str], sp.csr_matrix]:
    """Category x block indicator matrix (categories not in ``categories`` are ignored)."""
    names = list(blocks)
    rows, cols = [], []
    for j, name in enumerate(names):
        idx = categories.get_indexer(pd.Index([str(x) for x in blocks[name]]))
        idx = np.unique(idx[idx >= 0])
        rows.extend(idx.tolist())
        cols.extend([j] * len(idx))
    data = np.ones(len(rows), dtype=float)
    mat = sp.csr_matrix((data, (rows, cols)), shape=(len(categories), len(names)))
    return names, mat


def pick_blocks(scores: np.ndarray, names: Sequence[str], default: str | None) -> np.ndarray:
    """Highest-scoring block per row (first on ties); ``default`` where every score is 0.

    Parameters
    ----------
    scores : ndarray, shape (n_recipients, n_blocks)
        Affinity per block (>= 0).
    names : sequence of str
        Block names, in column order.
    default : str or None

    Returns
    -------
    ndarray of object
    """
    out = np.full(scores.shape[0], default, dtype=object)
    if scores.shape[1] == 0 or scores.shape[0] == 0:
        return out
    best = scores.argmax(axis=1)
    has = scores.max(axis=1) > 0
    out[has] = np.asarray(names, dtype=object)[best[has]]
    return out


def choose_content_blocks(
    customer_codes: np.ndarray, placement: Placement, context: RecContext
) -> np.ndarray:
    """Content block per recipient (context codes; ``-1`` unknown -> default).

    Returns
    -------
    ndarray of object
        Block name, ``default_content_block`` without matching affinity, or ``None`` when the
        placement declares no blocks.
    """
    n = len(customer_codes)
    if not placement.content_blocks:
        return np.full(n, None, dtype=object)
    names, cat_block = block_matrix(context.category_index, placement.content_blocks)
    known = customer_codes >= 0
    scores = np.zeros((n, len(names)), dtype=float)
    if known.any():
        sub = context.affinity_matrix[customer_codes[known]]
        scores[known] = (sub @ cat_block).toarray()
    return pick_blocks(scores, names, placement.default_content_block)


def best_content_block(
    affinity: pd.DataFrame, blocks: Mapping[str, Sequence[str]], default: str | None = None
) -> pd.Series:
    """Best block per customer from a long affinity frame (``customer_id, category, weight``).

    The same choice as :func:`choose_content_blocks`, for notebooks and tests.

    Returns
    -------
    Series
        Indexed by customer_id, block name (or ``default``).
    """
    cats = pd.Index(pd.unique(affinity[c.CATEGORY].astype(str)))
    custs = pd.Index(pd.unique(affinity[c.CUSTOMER_ID].astype(str)))
    mat = sp.csr_matrix(
        (
            affinity[WEIGHT].to_numpy(dtype=float),
            (
                custs.get_indexer(pd.Index(affinity[c.CUSTOMER_ID].astype(str))),
                cats.get_indexer(pd.Index(affinity[c.CATEGORY].astype(str))),
            ),
        ),
        shape=(len(custs), len(cats)),
    )
    names, cat_block = block_matrix(cats, blocks)
    scores = (mat @ cat_block).toarray()
    return pd.Series(pick_blocks(scores, names, default), index=custs, name="content_block")


__all__ = ["best_content_block", "block_matrix", "choose_content_blocks", "pick_blocks"]
