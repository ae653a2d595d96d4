"""Decision-path (Saabas) feature contributions of a LightGBM model.

At every split of every tree, the change of the node value (log-odds for a binary
objective) from the parent to the child taken is credited to the split's feature. A row's
contributions, plus the sum of the root values (``bias``), add up to its margin exactly, as
LightGBM's TreeSHAP ``pred_contrib`` does, at a small fraction of its cost: the table
"leaf -> summed changes per feature" is built once per model, after which a row costs one
``pred_leaf`` call and a sparse product. Used for the per-customer explanations of the
binary scorers and of repurchase timing.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TreePaths:
    """Per-leaf feature contributions of ``booster``'s first ``num_iteration`` trees.

    Parameters
    ----------
    booster : lightgbm.Booster
    num_iteration : int, optional
        Trees used (as in ``Booster.predict``); default all.

    Attributes
    ----------
    bias : float
        Sum of the root values: the margin of a row before any split.
    n_features : int
    """

    def __init__(self, booster: Any, num_iteration: int | None = None) -> None:
        from scipy import sparse

        self.booster = booster
        self.num_iteration = num_iteration
        self.n_features = int(booster.num_feature())
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        offsets: list[int] = []
        bias = 0.0
        base = 0
        dump = booster.dump_model(num_iteration=num_iteration)
        for tree in dump["tree_info"]:
            root = tree["tree_structure"]
            offsets.append(base)
            bias += float(root.get("internal_value", root.get("leaf_value", 0.0)))
            stack: list[tuple[dict, dict[int, float]]] = [(root, {})]
            n_leaves = 0
            while stack:
                node, acc = stack.pop()
                if "leaf_index" in node or "split_feature" not in node:
                    leaf = base + int(node.get("leaf_index", 0))
                    n_leaves += 1
                    for f, v in acc.items():
                        rows.append(leaf)
                        cols.append(f)
                        vals.append(v)
                    continue
                f = int(node["split_feature"])
                parent = float(node["internal_value"])
                for child in (node["left_child"], node["right_child"]):
                    value = float(child.get("internal_value", child.get("leaf_value", 0.0)))
                    nxt = dict(acc)
                    nxt[f] = nxt.get(f, 0.0) + value - parent
                    stack.append((child, nxt))
            base += n_leaves
        self._table = sparse.csr_matrix(
            (vals, (rows, cols)), shape=(base, self.n_features), dtype=np.float64
        )
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self.bias = bias

    def contributions(self, X: Any) -> np.ndarray:
        """Contributions to the margin, shape ``(n_rows, n_features)``.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            Rows in the model's feature order (what ``Booster.predict`` takes).

        Returns
        -------
        numpy.ndarray
            Row ``i`` sums, with :attr:`bias`, to the margin of row ``i``.
        """
        from scipy import sparse

        leaves = np.asarray(
            self.booster.predict(X, pred_leaf=True, num_iteration=self.num_iteration),
            dtype=np.int64,
        )
        n = leaves.shape[0]
        leaves = leaves.reshape(n, -1) + self._offsets[None, :]
        t = leaves.shape[1]
        onehot = sparse.csr_matrix(
            (np.ones(n * t), leaves.ravel(), np.arange(0, n * t + 1, t)),
            shape=(n, self._table.shape[0]),
        )
        return np.asarray((onehot @ self._table).toarray())
