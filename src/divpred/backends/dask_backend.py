r"""Dask backend: V[X], its moments, self-influence, fast delta scores and purification on data
that is split in row blocks (possibly larger than memory).

Everything here is a sum over points of per-point terms, so each quantity is computed block by
block with the numpy primitives of :mod:`divpred.models._softmax` and combined by a tree
reduction (``split_every`` blocks per node). Nothing n x n is ever formed and no worker holds
more than one row block of the gradients G at a time: memory per task is
O(chunk m + D^2 (C-1) C / 2 + m^2).

Passes over the data (each re-reads the blocks; numbers for the reduced coordinates,
m = (C-1)(d+1)):

==========================  =====================================================================
quantity                    passes
==========================  =====================================================================
Newton fit                  one per Newton iteration (loss, gradient and Hessian in one pass)
V[X], E[X]                  2: (col = sum g_i, S = G^T G, H) then (sum d'_i, sum d'_i^2)
self-influence              2 (the second one is a map, returned lazily)
moments of order > 2        2 + one pass over pairs of blocks (O(n^2 m): small n only)
fast1 delta scores          4: S/H/col; d' sums, sum d'_i g_i g_i^T and the gradient part of c;
                            the Hessian (third-derivative) part of c, which needs
                            M = H^{-1} G^T Phi G H^{-1} from pass 2; a map for the scores
==========================  =====================================================================

The fast1 formulas are those of :mod:`divpred.scores` (see its module docstring), rewritten as
sums over points: with F_i = H^{-1} g_i, d'_i = g_i^T F_i, A = H^{-1} S,

* S1 = -col^T H^{-1} col + sum d'_i,  S2 = tr(A A) - sum d'_i^2;
* G^T Phi G = (2/N) (-S H^{-1} S + sum_i d'_i g_i g_i^T - (S1/N)(col col^T - S)), M = H^{-1}
  (G^T Phi G) H^{-1};
* u_i = (2/N) (U1_i + (S1/N) U2_i) with U1_i = -A F_i + d'_i F_i and U2_i = F_i - H^{-1} col,
  so the gradient part of c, -2 sum_i h_i u_i, is two sums known after pass 2;
* mean_i <M, h_i> = <M, H_data>, so the Hessian renormalisation needs no extra pass.

Results equal the in-memory numpy functions to rounding (about 1e-12 relative; the tests check
1e-10). Data can come from numpy arrays, dask arrays, ``.npz`` files (one block per file),
``.npy`` stacks, zarr, Parquet (through ``dask.dataframe``) or be generated lazily.

Install with ``pip install 'divpred[dask]'``.
"""

from __future__ import annotations

try:
    import dask  # noqa: F401
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "divpred's Dask backend needs dask and distributed: pip install 'divpred[dask]'"
    ) from exc

from ._dask.data import (  # DEFAULT_BLOCK_ROWS: for the benchmarks
    DEFAULT_BLOCK_ROWS,  # noqa: F401
    as_dask_data,
    from_npy_stack,
    from_npz,
    from_parquet,
    from_zarr,
    synthetic_onehot,
    write_npz_blocks,
)
from ._dask.engine import SPLIT_EVERY  # noqa: F401
from ._dask.fit import fit_multinomial
from ._dask.influence import (
    FAST_METHODS,  # noqa: F401
    delta_scores,
    influence_moments,
    influence_summary,
    influence_variance,
    self_influence,
)
from ._dask.purify import DaskPurifier, peak_memory_per_worker

__all__ = [
    "DaskPurifier",
    "as_dask_data",
    "delta_scores",
    "fit_multinomial",
    "from_npy_stack",
    "from_npz",
    "from_parquet",
    "from_zarr",
    "influence_moments",
    "influence_summary",
    "influence_variance",
    "peak_memory_per_worker",
    "self_influence",
    "synthetic_onehot",
    "write_npz_blocks",
]
