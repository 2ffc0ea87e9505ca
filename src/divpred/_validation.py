"""Input checks shared by the estimators and the influence functions.

Every check raises :class:`ValueError` with a message a user can act on; the command line turns
these into a one-line error and exit code 2.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

MIN_POINTS = 3  # V[X] needs at least two distinct pairs of distinct points


def check_features(X, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 array of shape (n, d), or raise ValueError."""
    reject_sparse(X, name)
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be numeric; could not convert it to float64 ({exc})"
        ) from None
    if arr.ndim == 1:
        raise ValueError(
            f"{name} must be 2-dimensional (n_samples, n_features); got a 1-d array of "
            f"length {arr.shape[0]}. Reshape with X.reshape(-1, 1) for a single feature."
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_features); got {arr.ndim}-d")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no feature columns")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s); clean or impute them first"
        )
    return np.ascontiguousarray(arr)


def check_labels(y, n: int | None = None, *, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 1-d array, checking its length against ``n`` and rejecting NaN."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (n_samples,); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"X and {name} have different numbers of rows: {n} != {arr.shape[0]}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite labels")
    if arr.dtype.kind == "O" and any(v is None or (isinstance(v, float) and v != v) for v in arr):
        raise ValueError(f"{name} contains missing labels")
    return arr


def check_X_y(X, y, *, min_points: int = MIN_POINTS, min_classes: int = 2):
    """Validate a training set and return ``(X, y)`` as (float64 (n, d), 1-d array of length n)."""
    X = check_features(X)
    y = check_labels(y, X.shape[0])
    check_class_labels(y)
    if X.shape[0] < min_points:
        raise ValueError(f"need at least {min_points} points, got {X.shape[0]}")
    n_classes = np.unique(y).shape[0]
    if n_classes < min_classes:
        raise ValueError(
            f"y has {n_classes} class; a classifier needs at least {min_classes} classes"
        )
    return X, y


def check_class_labels(y: np.ndarray, *, name: str = "y") -> None:
    """Raise ValueError when float labels are not class codes: some value is not an integer.

    A float ``y`` with non-integer values is almost always a regression target read by
    mistake; as classes it would give one class per distinct value.
    """
    if y.dtype.kind != "f" or y.size == 0:
        return
    fractional = y != np.round(y)
    if np.any(fractional):
        distinct = np.unique(y)
        examples = ", ".join(f"{v:g}" for v in np.unique(y[fractional])[:3])
        raise ValueError(
            f"{name} looks like a regression target, not class labels: continuous values, "
            f"{distinct.size} distinct, some not integers (e.g. {examples}); divpred fits "
            "classifiers: give "
            "integer or text class labels (e.g. bin the target first)"
        )


def reject_sparse(X, name: str = "X") -> None:
    """Raise ValueError for a SciPy sparse matrix: divpred's estimators need dense features."""
    from scipy import sparse

    if sparse.issparse(X):
        raise ValueError(
            f"{name} is a sparse matrix ({type(X).__name__}); divpred needs dense features: "
            "convert it with X.toarray() (the influences use dense products anyway)"
        )


def check_positive_int(value, name: str) -> None:
    """Raise ValueError unless ``value`` is an integer >= 1 (``True``/``False`` are not)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def check_weights(sample_weight, n: int) -> np.ndarray | None:
    """Return non-negative float64 weights of shape (n,), or None when none are given."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},); got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if w.sum() <= 0:
        raise ValueError("sample_weight sums to zero")
    return w
