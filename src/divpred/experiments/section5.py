"""The paper's Section 5: the entropy of the known composition of the data, beside V[X].

The paper calls heterogeneity "tantamount to the entropy"

    E(Z) = -sum_{i=1}^{l} p_i log p_i,

p_i the fraction of Z consistent with function f_i (natural logarithm; 0 log 0 = 0), and says
that V[X] "mimics" it. The sweeps of Figures 3, 5 and 7 know their composition, so E can be set
beside V and their rank correlation measured:

* Figure 3 (label noise at rate r): two functions, the true labelling and the flipped labels,
  p = (1 - r, r);
* Figure 5: p = (|Z| - a, a) / |Z|;
* Figure 7: p = (|Z| - a - b, a, b) / |Z|.

On [0, 1/2] the Figure 3 entropy is increasing in r, so there Spearman(V, E) = Spearman(V, r).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["PAPER_TOTAL", "composition_entropy", "sweep_entropy", "with_entropy"]

PAPER_TOTAL = 600
"""|Z| of the paper's Figures 5 and 7 (the composition sweeps)."""


def composition_entropy(counts) -> float:
    """E = -sum_i p_i log p_i with p_i = counts_i / sum(counts) (natural log, 0 log 0 = 0).

    Parameters
    ----------
    counts : array-like of float >= 0, shape (l,)
        Size (or fraction) of each block; at least one positive.

    Returns
    -------
    float
        0 for one block, log(l) for l equal blocks.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0 or np.any(~np.isfinite(c)) or np.any(c < 0) or c.sum() <= 0:
        raise ValueError(f"counts must be finite, >= 0, with a positive sum; got {counts!r}")
    p = c[c > 0] / c.sum()
    entropy = -float(np.sum(p * np.log(p)))
    return entropy if entropy > 0 else 0.0  # one block: 0, not -0.0


def sweep_entropy(figure: str, table: pd.DataFrame, total: int = PAPER_TOTAL) -> np.ndarray:
    """The composition entropy of every row of a Figure 3, 5 or 7 table.

    Parameters
    ----------
    figure : {"fig3", "fig5", "fig7"}
    table : pandas.DataFrame
        Column ``a`` (the rate r for Figure 3, |A2| otherwise) and ``b`` (|A3|) for Figure 7.
    total : int
        |Z| of Figures 5 and 7 (unused for Figure 3).

    Returns
    -------
    ndarray of float64, shape (len(table),)
    """
    a = table["a"].to_numpy(dtype=np.float64)
    if figure == "fig3":
        blocks = np.column_stack([1.0 - a, a])
    elif figure == "fig5":
        blocks = np.column_stack([total - a, a])
    elif figure == "fig7":
        b = table["b"].to_numpy(dtype=np.float64)
        blocks = np.column_stack([total - a - b, a, b])
    else:
        raise ValueError(f"entropy is defined for the sweeps fig3, fig5, fig7; got {figure!r}")
    return np.array([composition_entropy(row) for row in blocks], dtype=np.float64)


def with_entropy(figure: str, table: pd.DataFrame, total: int = PAPER_TOTAL) -> pd.DataFrame:
    """A copy of ``table`` with a column ``entropy`` (:func:`sweep_entropy`) appended."""
    out = table.copy()
    out["entropy"] = sweep_entropy(figure, table, total)
    return out
