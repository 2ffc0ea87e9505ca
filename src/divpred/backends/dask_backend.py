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

import glob
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "divpred's Dask backend needs dask and distributed: pip install 'divpred[dask]'"
    ) from exc

import pandas as pd

from .._state import FittedState, pair_removal_delta, variance_from_sums
from .._validation import MIN_POINTS
from ..influence import InfluenceSummary
from ..models import _softmax as sm
from ..models.multinomial import MultinomialLogit, _psd_solve

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

DEFAULT_BLOCK_ROWS = 50_000  # 50 000 x m = 123 doubles of G: 49 MB per task
SPLIT_EVERY = 8  # fan-in of the tree reductions
FAST_METHODS = ("fast1", "self_influence")


# =============================================================================== data input
def as_dask_data(X, y, *, block_rows: int | None = None):
    """Return ``(X, y)`` as dask arrays with the same row blocks and one block of columns.

    Parameters
    ----------
    X : numpy or dask array of shape (n, d), any numeric dtype (cast to float64 per block)
    y : numpy or dask array of shape (n,), any label type
    block_rows : int, optional
        Rows per block when ``X`` is a numpy array (default ``DEFAULT_BLOCK_ROWS``) or to
        rechunk a dask array.
    """
    if not isinstance(X, da.Array):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional; got shape {X.shape}")
        X = da.from_array(X, chunks=(block_rows or DEFAULT_BLOCK_ROWS, -1))
    elif block_rows is not None:
        X = X.rechunk((block_rows, -1))
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional; got shape {X.shape}")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if not isinstance(y, da.Array):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.shape != (X.shape[0],):
            raise ValueError(f"X and y have different numbers of rows: {X.shape[0]} != {y.shape}")
        y = da.from_array(y, chunks=(X.chunks[0],))
    else:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if any(np.isnan(c) for c in y.chunks[0]):
            y = y.compute_chunk_sizes()
        if y.shape != (X.shape[0],):
            raise ValueError(f"X and y have different numbers of rows: {X.shape[0]} != {y.shape}")
        if y.chunks[0] != X.chunks[0]:
            y = y.rechunk((X.chunks[0],))
    return X, y


def _npy_header(fh):
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return shape, dtype


def _npz_shape(path, key):
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
        return _npy_header(fh)


def _load_npz_member(path, key):
    with np.load(path, allow_pickle=False) as data:
        return data[key]


def from_npz(paths, *, x_key: str = "X", y_key: str = "y"):
    """Lazily read a list of ``.npz`` files (or a glob pattern), one row block per file.

    Only the array headers are read here; each block is loaded by the task that needs it.
    """
    if isinstance(paths, str | os.PathLike):
        paths = sorted(glob.glob(os.fspath(paths)))
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no .npz files given")
    xs, ys = [], []
    for p in paths:
        xshape, xdtype = _npz_shape(p, x_key)
        yshape, ydtype = _npz_shape(p, y_key)
        if len(xshape) != 2 or yshape != (xshape[0],):
            raise ValueError(
                f"{p}: {x_key} must be (n, d) and {y_key} (n,); got {xshape}, {yshape}"
            )
        xs.append(da.from_delayed(dask.delayed(_load_npz_member)(p, x_key), xshape, xdtype))
        ys.append(da.from_delayed(dask.delayed(_load_npz_member)(p, y_key), yshape, ydtype))
    return as_dask_data(da.concatenate(xs, axis=0), da.concatenate(ys, axis=0))


def write_npz_blocks(X, y, directory, *, prefix: str = "block") -> list[str]:
    """Write (dask or numpy) ``X``, ``y`` as one ``.npz`` file per row block; returns the paths.

    Blocks are computed and written one task at a time, so the data never has to fit in memory.
    """
    X, y = as_dask_data(X, y)
    os.makedirs(directory, exist_ok=True)
    nb = X.numblocks[0]
    width = len(str(nb))
    paths = [os.path.join(directory, f"{prefix}-{i:0{width}d}.npz") for i in range(nb)]
    tasks = [
        dask.delayed(_write_npz)(p, xb, yb)
        for p, xb, yb in zip(paths, X.to_delayed().ravel(), y.to_delayed().ravel(), strict=True)
    ]
    dask.compute(*tasks)
    return paths


def _write_npz(path, xb, yb):
    np.savez(path, X=xb, y=yb)
    return path


def from_npy_stack(x_dir, y_dir):
    """Read arrays written by ``dask.array.to_npy_stack`` (memory-mapped per block)."""
    return as_dask_data(da.from_npy_stack(x_dir), da.from_npy_stack(y_dir))


def from_zarr(store, *, x_component: str = "X", y_component: str = "y"):
    """Read ``X`` and ``y`` from a zarr store (needs the ``zarr`` package)."""
    X = da.from_zarr(store, component=x_component)
    y = da.from_zarr(store, component=y_component)
    return as_dask_data(X, y.rechunk((X.chunks[0],)))


def from_parquet(path, label: str, features=None):
    """Read a Parquet data set with ``dask.dataframe`` (needs ``pyarrow``).

    Parameters
    ----------
    path : str, a file, directory or glob
    label : name of the label column
    features : list of feature column names (default: every other column, which must be numeric)
    """
    import dask.dataframe as dd

    frame = dd.read_parquet(path)
    if features is None:
        features = [c for c in frame.columns if c != label]
    # Block lengths are unknown until read: as_dask_data computes them (one light pass) and
    # aligns y's blocks with X's.
    X = frame[list(features)].to_dask_array()
    y = frame[label].to_dask_array()
    return as_dask_data(X, y)


def _onehot_block(block_id, rows, n_groups, levels, n_classes, seed, weights):
    rng = np.random.default_rng([seed, block_id])
    codes = rng.integers(0, levels, size=(rows, n_groups))
    X = np.zeros((rows, n_groups * levels))
    X[np.arange(rows)[:, None], codes + levels * np.arange(n_groups)] = 1.0
    logits = X @ weights + rng.gumbel(size=(rows, n_classes))
    return X, np.argmax(logits, axis=1)


def synthetic_onehot(
    n: int,
    *,
    n_groups: int = 10,
    levels: int = 4,
    n_classes: int = 4,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    seed: int = 0,
):
    """Lazily generated one-hot data: ``n_groups`` categorical features of ``levels`` levels
    each (d = n_groups * levels one-hot columns, as the paper's SD sets: 10 x 4 = 40) and labels
    from a noisy linear rule. Each block is generated by its task from (seed, block index).
    """
    d = n_groups * levels
    weights = np.random.default_rng(seed).normal(size=(d, n_classes))
    sizes = [block_rows] * (n // block_rows) + ([n % block_rows] if n % block_rows else [])
    xs, ys = [], []
    for b, rows in enumerate(sizes):
        blk = dask.delayed(_onehot_block, nout=2, pure=True)(
            b, rows, n_groups, levels, n_classes, seed, weights
        )
        xs.append(da.from_delayed(blk[0], (rows, d), np.float64))
        ys.append(da.from_delayed(blk[1], (rows,), np.int64))
    return as_dask_data(da.concatenate(xs), da.concatenate(ys))


# ============================================================================= block engine
@dataclass
class _Data:
    """Row-blocked data, its classes and the rows removed so far (purification)."""

    X: da.Array
    y: da.Array
    classes: np.ndarray
    removed: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    rows: da.Array = field(init=False)

    def __post_init__(self):
        self.rows = da.arange(self.X.shape[0], chunks=(self.X.chunks[0],))

    @property
    def n(self) -> int:
        return int(self.X.shape[0] - self.removed.size)


def _prepare(X, y, classes=None) -> _Data:
    X, y = as_dask_data(X, y)
    if classes is None:
        classes = np.unique(np.asarray(y.map_blocks(np.unique, dtype=y.dtype).compute()))
    return _Data(X, y, np.asarray(classes))


def _block_arrays(Xb, yb, rb, consts):
    """Kept rows of one block: (Xa float64, class indices)."""
    removed = consts["removed"]
    if removed.size:
        keep = ~np.isin(rb, removed, assume_unique=True)
        Xb, yb = Xb[keep], yb[keep]
    classes = consts["classes"]
    idx = np.clip(np.searchsorted(classes, yb), 0, classes.shape[0] - 1)
    if np.any(classes[idx] != yb):
        unseen = np.unique(yb[classes[idx] != yb])[:5].tolist()
        raise ValueError(f"labels not seen when the model was fitted: {unseen}")
    return sm.augment(np.asarray(Xb, dtype=np.float64)), idx


def _block_state(Xb, yb, rb, consts) -> FittedState:
    Xa, yidx = _block_arrays(Xb, yb, rb, consts)
    return FittedState(Xa=Xa, yidx=yidx, theta=consts["theta"], mu=0.0)


def _reduce_task(func, Xb, yb, rb, consts):
    with sm._single_threaded_blas():
        return func(Xb, yb, rb, consts)[None, :]


def _map_task(func, Xb, yb, rb, consts):
    with sm._single_threaded_blas():
        out = np.full(Xb.shape[0], np.nan)
        vals = func(Xb, yb, rb, consts)
        removed = consts["removed"]
        if removed.size:
            out[~np.isin(rb, removed, assume_unique=True)] = vals
        else:
            out[:] = vals
        return out


def _reduce(data: _Data, func, length: int, consts: dict, client=None) -> np.ndarray:
    """Sum over row blocks of ``func(block) -> (length,)``, as a tree reduction."""
    consts = dict(consts, classes=data.classes, removed=data.removed)
    parts = da.blockwise(
        _reduce_task, "ik",
        func, None,
        data.X, "ij",
        data.y, "i",
        data.rows, "i",
        dask.delayed(consts, pure=True), None,
        new_axes={"k": length},
        adjust_chunks={"i": 1},
        concatenate=True,
        dtype=np.float64,
    )
    total = parts.sum(axis=0, split_every=SPLIT_EVERY)
    return np.asarray(_compute(total, client))


def _map(data: _Data, func, consts: dict) -> da.Array:
    """Per-row ``func(block) -> (rows,)`` as a lazy dask array (NaN for removed rows)."""
    consts = dict(consts, classes=data.classes, removed=data.removed)
    return da.blockwise(
        _map_task, "i",
        func, None,
        data.X, "ij",
        data.y, "i",
        data.rows, "i",
        dask.delayed(consts, pure=True), None,
        concatenate=True,
        dtype=np.float64,
    )


def _compute(obj, client=None):
    if client is not None:
        return dask.compute(obj, scheduler=client)[0]
    return dask.compute(obj)[0]


# ============================================================== per-block sums (numpy)
def _n_pairs(B: int) -> int:
    return B * (B + 1) // 2


def _stats_block(Xb, yb, rb, c):
    """[count, loss sum, col = sum g_i, H gram blocks, (S gram blocks)] of one block."""
    st = _block_state(Xb, yb, rb, c)
    B = st.B
    out = [np.array([st.n, st.losses().sum()]), (st.R.T @ st.Xa).ravel()]
    out.append(sm._gram_upper(st.Xa, sm._upper_hessian_weights(st.P, st.Q)).ravel())
    if c["with_S"]:
        ia, ib = np.triu_indices(B)
        out.append(sm._gram_upper(st.Xa, st.R[:, ia] * st.R[:, ib]).ravel())
    return np.concatenate(out)


def _whitened(st: FittedState, Hinv: np.ndarray):
    G = st.G
    F = G @ Hinv  # rows H^{-1} g_i
    return G, F, np.einsum("ij,ij->i", G, F)


def _pass2_block(Xb, yb, rb, c):
    """[sum d', sum d'^2, sum d'_i g_i g_i^T (gram blocks), CG1, CG2] of one block."""
    st = _block_state(Xb, yb, rb, c)
    B = st.B
    G, F, dprime = _whitened(st, c["Hinv"])
    ia, ib = np.triu_indices(B)
    A2 = sm._gram_upper(st.Xa, dprime[:, None] * (st.R[:, ia] * st.R[:, ib]))
    out = [np.array([dprime.sum(), np.sum(dprime * dprime)]), A2.ravel()]
    if c["with_c"]:
        U1 = -(F @ c["At"]) + dprime[:, None] * F
        U2 = F - c["Hcol"][None, :]
        for U in (U1, U2):
            # h_i u_i = hu_i (x) xa_i
            hu = np.einsum("nab,nb->na", st.W, sm.block_rows_dot(U, st.Xa))
            out.append((hu.T @ st.Xa).ravel())
    return np.concatenate(out)


def _quad_blocks(st: FittedState, M: np.ndarray) -> np.ndarray:
    return sm.block_quadratic_forms(st.Xa, M, st.B)


def _pass3_block(Xb, yb, rb, c):
    """sum_i (Q^T W_i v_i) (x) xa_i of one block (the Hessian part of c, times n)."""
    st = _block_state(Xb, yb, rb, c)
    coef = sm.hessian_shift_coefficients(st.P, st.Q, _quad_blocks(st, c["M"]))
    return (coef.T @ st.Xa).ravel()


def _self_influence_block(Xb, yb, rb, c):
    st = _block_state(Xb, yb, rb, c)
    return _whitened(st, c["Hinv"])[2]


def _fast1_block(Xb, yb, rb, c):
    """fast1 delta(z) = V - V_{-z} for the kept rows of one block."""
    st = _block_state(Xb, yb, rb, c)
    n = c["n"]
    G, F, dprime = _whitened(st, c["Hinv"])
    r = -(F @ c["col"])  # sum_j K_zj
    s = np.einsum("ij,ij->i", F @ c["S"], F)  # sum_j K_zj^2
    Qd = _quad_blocks(st, c["M"])
    qw = np.einsum("nab,nab->n", Qd, st.W)  # <M, h_z>
    shift = (F @ c["c"]) / n
    renorm = (c["qw_mean"] - qw) / (n - 1.0)
    return pair_removal_delta(c["S1"], c["S2"], n, r + dprime, s - dprime**2, shift, renorm)


# ================================================================== model-level passes
def _theta_of(model) -> np.ndarray:
    return np.asarray(model.theta_, dtype=np.float64)


def _unpack_stats(vec, B, D, with_S):
    K = _n_pairs(B)
    m = B * D
    count, loss = vec[0], vec[1]
    col = vec[2 : 2 + m]
    off = 2 + m
    H = sm._assemble_blocks(vec[off : off + K * D * D].reshape(D, K * D), B)
    S = None
    if with_S:
        off += K * D * D
        S = sm._assemble_blocks(vec[off : off + K * D * D].reshape(D, K * D), B)
    return int(round(count)), float(loss), col, H, S


def _stats(data: _Data, theta, *, with_S: bool, client=None):
    C, D = theta.shape
    B = C - 1
    K = _n_pairs(B)
    length = 2 + B * D + (2 if with_S else 1) * K * D * D
    vec = _reduce(data, _stats_block, length, {"theta": theta, "with_S": with_S}, client)
    return _unpack_stats(vec, B, D, with_S)


@dataclass
class _Pass1:
    n: int
    loss_sum: float
    col: np.ndarray
    H_data: np.ndarray  # mean data Hessian
    S: np.ndarray
    Hinv: np.ndarray
    Hcol: np.ndarray
    At: np.ndarray  # S H^{-1} = (H^{-1} S)^T
    theta: np.ndarray


def _pass1(data: _Data, model, client=None) -> _Pass1:
    theta = _theta_of(model)
    n, loss, col, H_sum, S = _stats(data, theta, with_S=True, client=client)
    if n < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} points for pairwise influences, got {n}")
    H_data = H_sum / n
    H = H_data + (model.alpha + model.damping) * np.eye(H_data.shape[0])
    try:
        cho = linalg.cho_factor(H, lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise ValueError(
            "the damped Hessian is not positive definite; use damping > 0 or alpha > 0"
        ) from None
    Hinv = linalg.cho_solve(cho, np.eye(H.shape[0]), check_finite=False)
    Hinv = 0.5 * (Hinv + Hinv.T)
    Hcol = Hinv @ col
    At = S @ Hinv
    return _Pass1(n, loss, col, H_data, S, Hinv, Hcol, At, theta)


def _pass2(data: _Data, p1: _Pass1, *, with_c: bool, client=None):
    C, D = p1.theta.shape
    B = C - 1
    m = B * D
    K = _n_pairs(B)
    length = 2 + K * D * D + (2 * m if with_c else 0)
    consts = {"theta": p1.theta, "Hinv": p1.Hinv, "with_c": with_c}
    if with_c:
        consts.update(At=p1.At, Hcol=p1.Hcol)
    vec = _reduce(data, _pass2_block, length, consts, client)
    sum_d, sum_d2 = vec[0], vec[1]
    A2 = sm._assemble_blocks(vec[2 : 2 + K * D * D].reshape(D, K * D), B)
    S1 = -float(p1.col @ p1.Hcol) + float(sum_d)
    S2 = float(np.sum(p1.At * p1.At.T)) - float(sum_d2)  # tr((H^-1 S)^2)
    out = {"S1": S1, "S2": S2, "A2": A2}
    if with_c:
        off = 2 + K * D * D
        out["CG1"], out["CG2"] = vec[off : off + m], vec[off + m : off + 2 * m]
    return out


def influence_summary(model, X, y, *, client=None) -> InfluenceSummary:
    """S1 and S2 (see :mod:`divpred.influence`) in two passes over row blocks.

    Parameters
    ----------
    model : fitted :class:`~divpred.MultinomialLogit` (its ``alpha`` and ``damping`` are used)
    X, y : numpy or dask arrays with the same row blocks (see :func:`as_dask_data`)
    client : ``distributed.Client``, optional (default: dask's current scheduler)
    """
    return _summary(_prepare(X, y, model.classes_), model, client)


def _summary(data: _Data, model, client=None) -> InfluenceSummary:
    p1 = _pass1(data, model, client)
    p2 = _pass2(data, p1, with_c=False, client=client)
    return InfluenceSummary(n=p1.n, n_params=p1.Hinv.shape[0], pair_sum=p2["S1"],
                            pair_sum_sq=p2["S2"])


def influence_variance(model, X, y, *, client=None) -> float:
    """V[X] over ordered pairs i != j, in two passes (no n x n matrix, no full G)."""
    return influence_summary(model, X, y, client=client).variance


def self_influence(model, X, y, *, client=None) -> da.Array:
    """g_i^T H^{-1} g_i for every row, as a lazy dask array (one pass runs now, for H)."""
    data = _prepare(X, y, model.classes_)
    p1 = _pass1(data, model, client)
    return _map(data, _self_influence_block, {"theta": p1.theta, "Hinv": p1.Hinv})


_PAIR_TILE = 2048  # rows x columns of K per product in the pair tasks: 32 MB


def _moment_pair_task(Xi, yi, ri, Xj, yj, rj, consts, orders, same):
    """sum of K_ab^k over a in block i, b in block j (a != b), in tiles of K."""
    with sm._single_threaded_blas():
        si = _block_state(Xi, yi, ri, consts)
        sj = _block_state(Xj, yj, rj, consts)
        L = consts["Linv_T"]
        Yi, Yj = si.G @ L, sj.G @ L
        factor = 1.0 if same else 2.0  # the block (j, i) is the transpose
        out = np.zeros(len(orders))
        top = max(orders)
        for a in range(0, Yi.shape[0], _PAIR_TILE):
            for b in range(0, Yj.shape[0], _PAIR_TILE):
                Kb = -(Yi[a : a + _PAIR_TILE] @ Yj[b : b + _PAIR_TILE].T)
                if same and a == b:
                    np.fill_diagonal(Kb, 0.0)
                power = Kb.copy()
                for k in range(2, top + 1):
                    power *= Kb
                    if k in orders:
                        out[orders.index(k)] += factor * float(np.sum(power))
        return out


def influence_moments(model, X, y, orders=(1, 2, 3, 4), *, client=None) -> dict[int, float]:
    """Raw moments E[X^k] over ordered pairs i != j.

    Orders 1 and 2 use the two-pass closed forms. Higher orders sum K_ij^k over all pairs of
    row blocks (one task per pair, each recomputing its two blocks of Y = G L^{-T}):
    O(n^2 m) time, memory O(block^2) per task, so only for moderate n.
    """
    orders = tuple(int(k) for k in orders)
    if any(k < 1 for k in orders):
        raise ValueError(f"moment orders must be positive integers; got {orders}")
    data = _prepare(X, y, model.classes_)
    p1 = _pass1(data, model, client)
    p2 = _pass2(data, p1, with_c=False, client=client)
    n = p1.n
    N = n * (n - 1.0)
    sums = {1: p2["S1"], 2: p2["S2"]}
    high = tuple(sorted({k for k in orders if k > 2}))
    if high:
        H = p1.H_data + (model.alpha + model.damping) * np.eye(p1.Hinv.shape[0])
        L = linalg.cholesky(H, lower=True, check_finite=False)
        Linv_T = linalg.solve_triangular(L, np.eye(L.shape[0]), lower=True).T.copy()
        consts = dask.delayed(
            {"theta": p1.theta, "classes": data.classes, "removed": data.removed,
             "Linv_T": Linv_T}, pure=True,
        )
        Xd, yd = data.X.to_delayed().ravel(), data.y.to_delayed().ravel()
        rd = data.rows.to_delayed().ravel()
        task = dask.delayed(_moment_pair_task, pure=True)
        parts = [
            task(Xd[i], yd[i], rd[i], Xd[j], yd[j], rd[j], consts, high, i == j)
            for i in range(len(Xd)) for j in range(i, len(Xd))
        ]
        while len(parts) > 1:  # tree sum
            parts = [
                dask.delayed(sum)(parts[s : s + SPLIT_EVERY], np.zeros(len(high)))
                for s in range(0, len(parts), SPLIT_EVERY)
            ]
        total = _compute(parts[0], client)
        sums.update({k: float(total[i]) for i, k in enumerate(high)})
    return {k: sums[k] / N for k in orders}


# ===================================================================== fast delta scores
def delta_scores(model, X, y, method: str = "fast1", *, client=None, return_info=False):
    """Removal scores for every row (larger = remove first), as a lazy dask array.

    ``method="fast1"``: the first-order leave-one-out scores of :func:`divpred.delta_scores`
    (same formulas, same values to rounding) in three reduction passes and one map.
    ``method="self_influence"``: g_z^T H^{-1} g_z.
    The exact, fast2 and refit methods need n x n or per-candidate work and are not offered.
    """
    if method not in FAST_METHODS:
        raise ValueError(f"the Dask backend offers methods {FAST_METHODS}; got {method!r}")
    data = _prepare(X, y, model.classes_)
    scores, info = _delta(data, model, method, client)
    return (scores, info) if return_info else scores


def _delta(data: _Data, model, method: str, client=None):
    p1 = _pass1(data, model, client)
    if method == "self_influence":
        scores = _map(data, _self_influence_block, {"theta": p1.theta, "Hinv": p1.Hinv})
        return scores, {"method": method, "n": p1.n}
    n = p1.n
    if n < MIN_POINTS + 1:
        raise ValueError(
            f"need at least {MIN_POINTS + 1} points to score leave-one-out removals, got {n}"
        )
    p2 = _pass2(data, p1, with_c=True, client=client)
    S1, S2 = p2["S1"], p2["S2"]
    N = n * (n - 1.0)
    V = float(variance_from_sums(S1, S2, n))
    GtPhiG = (2.0 / N) * (
        -(p1.S @ p1.Hinv @ p1.S) + p2["A2"] - (S1 / N) * (np.outer(p1.col, p1.col) - p1.S)
    )
    M = p1.Hinv @ GtPhiG @ p1.Hinv
    M = 0.5 * (M + M.T)
    c_grad = -2.0 * (2.0 / N) * (p2["CG1"] + (S1 / N) * p2["CG2"])
    C, D = p1.theta.shape
    c_hess = _reduce(data, _pass3_block, (C - 1) * D, {"theta": p1.theta, "M": M}, client) / n
    consts = {
        "theta": p1.theta, "Hinv": p1.Hinv, "S": p1.S, "col": p1.col, "M": M,
        "c": c_grad + c_hess, "n": float(n), "S1": S1, "S2": S2,
        "qw_mean": float(np.sum(M * p1.H_data)),
    }
    info = {"method": method, "variance": V, "n": n, "pair_sum": S1, "pair_sum_sq": S2,
            "train_loss": p1.loss_sum / n}
    return _map(data, _fast1_block, consts), info


# ================================================================================= fitting
def _objective_terms(data: _Data, phi, Q, alpha, client=None):
    theta = Q @ phi
    n, loss, col, H_sum, _ = _stats(data, theta, with_S=False, client=client)
    f = loss / n + 0.5 * alpha * float(np.sum(phi * phi))
    grad = col / n + alpha * phi.ravel()
    H = H_sum / n
    H[np.diag_indices_from(H)] += alpha
    return f, grad, H, loss / n


def fit_multinomial(
    X,
    y,
    *,
    alpha: float = 1e-4,
    damping: float = 0.01,
    tol: float = 1e-10,
    max_iter: int = 100,
    start="subsample",
    subsample_rows: int | None = None,
    client=None,
    _data: _Data | None = None,
) -> MultinomialLogit:
    """Fit :class:`~divpred.MultinomialLogit`'s objective (Newton) on row-blocked data.

    Each Newton iteration is one pass over the data: the loss, the gradient and the Hessian are
    sums over blocks (tree reductions). Line search and stopping rule are those of the numpy
    solver, so both reach the same minimiser (to ``tol`` on the gradient's max-norm).

    Parameters
    ----------
    start : "subsample", None or an array of shape (C, d + 1)
        ``"subsample"``: start from the numpy Newton fit on a random subsample of
        ``subsample_rows`` rows (default max(100 m, n / 16), at most 10^6) when n >= 10^5 —
        fewer full passes, same minimiser. ``None``: theta = 0. An array: warm start.

    Returns
    -------
    MultinomialLogit
        A fitted (numpy) estimator with ``solver="newton"``; usable by every divpred function.
    """
    data = _data if _data is not None else _prepare(X, y)
    classes = data.classes
    C = classes.shape[0]
    if C < 2:
        raise ValueError("need at least two classes")
    D = data.X.shape[1] + 1
    Q = sm.contrast_basis(C)
    m = (C - 1) * D
    n = data.n
    phi = np.zeros((C - 1, D))
    if isinstance(start, str) and start == "subsample":
        if n >= 100_000:
            phi = Q.T @ _subsample_theta(data, alpha, tol, m, subsample_rows)
    elif start is not None:
        phi = Q.T @ np.asarray(start, dtype=np.float64)
    phi = phi.ravel()

    f, grad, H, loss = _objective_terms(data, phi.reshape(C - 1, D), Q, alpha, client)
    converged, n_iter = False, max_iter
    for it in range(1, max_iter + 1):
        if np.max(np.abs(grad)) <= tol:
            converged, n_iter = True, it - 1
            break
        step = _psd_solve(H, grad)
        decrement = float(grad @ step)
        if decrement <= 1e-12 * max(1.0, abs(f)):
            phi = phi - step
            f, grad, H, loss = _objective_terms(data, phi.reshape(C - 1, D), Q, alpha, client)
            if decrement <= 1e-28 * max(1.0, abs(f)):
                converged, n_iter = True, it
                break
            continue
        t, slope = 1.0, -decrement
        while True:
            cand = phi - t * step
            f_new, g_new, H_new, l_new = _objective_terms(
                data, cand.reshape(C - 1, D), Q, alpha, client
            )
            if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        if t < 1e-10 and f_new >= f:
            converged, n_iter = bool(np.max(np.abs(grad)) <= max(tol, 1e-8)), it
            break
        phi, f, grad, H, loss = cand, f_new, g_new, H_new, l_new
    else:
        converged = bool(np.max(np.abs(grad)) <= tol)

    model = MultinomialLogit(alpha=alpha, damping=damping, solver="newton", tol=tol,
                             max_iter=max_iter)
    theta = Q @ phi.reshape(C - 1, D)
    model.classes_ = classes
    model.coef_ = theta[:, :-1].copy()
    model.intercept_ = theta[:, -1].copy()
    model.n_features_in_ = D - 1
    model.n_iter_ = int(n_iter)
    model.converged_ = bool(converged)
    model.objective_ = float(f)
    model.train_loss_ = float(loss)
    return model


def _subsample_theta(data: _Data, alpha, tol, m, rows):
    n_total = data.X.shape[0]
    n_sub = rows or min(max(100 * m, data.n // 16), 1_000_000)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(n_total, size=min(n_sub + data.removed.size, n_total),
                             replace=False))
    idx = idx[~np.isin(idx, data.removed)][:n_sub]
    Xs, ys = dask.compute(data.X[idx], data.y[idx])
    sub = MultinomialLogit(alpha=alpha, tol=tol).fit(np.asarray(Xs, dtype=np.float64), ys)
    theta = np.zeros((data.classes.shape[0], data.X.shape[1] + 1))
    pos = np.searchsorted(data.classes, sub.classes_)
    theta[pos] = sub.theta_  # a class missing from the subsample keeps 0 weights
    return theta


# ============================================================================ purification
class DaskPurifier:
    """Purification (iterated removal of the top-``k`` scores with Newton refits) on dask data.

    The same loop as :class:`divpred.Purifier` with ``method="fast1"`` (or
    ``"self_influence"``) and a Newton :class:`~divpred.MultinomialLogit`: every iteration fits
    the model by Newton with the gradient and Hessian as tree reductions (warm-started from the
    previous fit), scores the kept rows in four passes, and removes the ``k`` largest scores.
    Removed rows are kept as a sorted index list; the data are never rewritten.

    Parameters
    ----------
    alpha, damping, tol, max_newton : the model's settings (see MultinomialLogit).
    method : {"fast1", "self_influence"}
    k : rows removed per iteration
    max_iter : number of removal iterations
    min_size : never shrink below this many rows (default max(3 k, 10))
    client : distributed.Client, optional

    Attributes
    ----------
    history_ : pandas.DataFrame with ``iteration``, ``size``, ``variance``, ``train_loss``,
        ``method_used``, ``removed``, ``newton_iterations``, ``seconds`` and ``eval_accuracy``
        when an ``eval_set`` is given.
    removal_order_ : ndarray of int (row indices in removal order)
    model_ : the last fitted MultinomialLogit
    keep_mask_ : lazy dask boolean array of the kept rows
    """

    def __init__(self, *, alpha=1e-4, damping=0.01, tol=1e-10, max_newton=100,
                 method="fast1", k=10, max_iter=40, min_size=None, client=None):
        if method not in FAST_METHODS:
            raise ValueError(f"method must be one of {FAST_METHODS}; got {method!r}")
        self.alpha, self.damping, self.tol, self.max_newton = alpha, damping, tol, max_newton
        self.method, self.k, self.max_iter, self.min_size = method, k, max_iter, min_size
        self.client = client

    def fit(self, X, y, eval_set=None) -> DaskPurifier:
        import time

        data = _prepare(X, y)
        min_size = self.min_size if self.min_size is not None else max(3 * self.k, 10)
        records, order = [], []
        model = None
        it = 0
        while True:
            t0 = time.perf_counter()
            model = fit_multinomial(
                None, None, alpha=self.alpha, damping=self.damping, tol=self.tol,
                max_iter=self.max_newton, client=self.client, _data=data,
                start="subsample" if model is None else model.theta_,
            )
            last = it >= self.max_iter or data.n - self.k < min_size
            rec = {"iteration": it, "size": data.n, "train_loss": model.train_loss_,
                   "newton_iterations": model.n_iter_}
            if last:
                rec["variance"] = _summary(data, model, self.client).variance
                rec["method_used"] = ""
                removed = []
            else:
                scores, info = _delta(data, model, self.method, self.client)
                rec["variance"] = (info["variance"] if "variance" in info
                                   else _summary(data, model, self.client).variance)
                rec["method_used"] = self.method
                removed = _top_k(scores, data.rows, self.k, self.client)
            if eval_set is not None:
                rec["eval_accuracy"] = _accuracy(model, *eval_set, client=self.client)
            rec["removed"] = list(removed)
            rec["seconds"] = time.perf_counter() - t0
            records.append(rec)
            if last:
                break
            order.extend(removed)
            data.removed = np.sort(np.asarray(order, dtype=np.int64))
            it += 1
        self.history_ = pd.DataFrame.from_records(records)
        self.removal_order_ = np.asarray(order, dtype=np.int64)
        self.model_ = model
        self.keep_mask_ = ~da.isin(data.rows, data.removed)
        return self


def _block_top(vals, rows, k):
    """The k largest finite values of one block and their row indices, packed (2, k')."""
    finite = np.isfinite(vals)
    vals, rows = vals[finite], rows[finite]
    if vals.size > k:
        part = np.argpartition(-vals, k - 1)[:k]
        vals, rows = vals[part], rows[part]
    return np.stack([vals, rows.astype(np.float64)])


def _top_k(scores: da.Array, rows: da.Array, k: int, client=None) -> list[int]:
    """Row indices of the k largest scores (NaN = removed rows excluded), ties by lower index.

    One pass over the (lazy) scores: each block keeps its k best, the client merges them.
    """
    parts = [
        dask.delayed(_block_top)(v, r, k)
        for v, r in zip(scores.to_delayed().ravel(), rows.to_delayed().ravel(), strict=True)
    ]
    cand = np.concatenate(_compute(parts, client), axis=1)
    vals, idx = cand[0], cand[1].astype(np.int64)
    order = np.lexsort((idx, -vals))[:k]
    return [int(i) for i in idx[order]]


def _predict_block(Xb, theta, classes):
    Xa = sm.augment(np.asarray(Xb, dtype=np.float64))
    return classes[np.argmax(Xa @ theta.T, axis=1)]


def _accuracy(model, X, y, client=None) -> float:
    if not isinstance(X, da.Array) and not isinstance(y, da.Array):
        return float(model.score(np.asarray(X, dtype=np.float64), np.asarray(y)))
    X, y = as_dask_data(X, y)
    pred = X.map_blocks(_predict_block, model.theta_, model.classes_, drop_axis=1,
                        dtype=model.classes_.dtype)
    return float(_compute((pred == y).mean(), client))


# =============================================================================== monitoring
def peak_memory_per_worker(client) -> dict[str, float]:
    """Peak resident memory (MB) of each worker process since it started (ru_maxrss).

    With threaded workers (``processes=False``) every worker reports the client's process.
    """
    return {k: v / 1024.0 for k, v in client.run(_maxrss_kb).items()}


def _maxrss_kb() -> float:
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
