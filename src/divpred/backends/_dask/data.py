"""Row-blocked data for the Dask backend: numpy/dask arrays, .npz blocks, .npy stacks, zarr,
Parquet, lazily generated one-hot data."""

from __future__ import annotations

import glob
import os
import zipfile

import dask
import dask.array as da
import numpy as np

from divpred.data.onehot_logit import onehot_logit_block, onehot_logit_weights

DEFAULT_BLOCK_ROWS = 50_000  # 50 000 x m = 123 doubles of G: 49 MB per task


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
    drawn from a multinomial logit (:mod:`divpred.data.onehot_logit`). Each block is generated
    by its task from (seed, block index).
    """
    d = n_groups * levels
    weights = onehot_logit_weights(seed, n_groups, levels, n_classes)
    sizes = [block_rows] * (n // block_rows) + ([n % block_rows] if n % block_rows else [])
    xs, ys = [], []
    for b, rows in enumerate(sizes):
        blk = dask.delayed(onehot_logit_block, nout=2, pure=True)(
            b, rows, n_groups, levels, n_classes, seed, weights
        )
        xs.append(da.from_delayed(blk[0], (rows, d), np.float64))
        ys.append(da.from_delayed(blk[1], (rows,), np.int64))
    return as_dask_data(da.concatenate(xs), da.concatenate(ys))
