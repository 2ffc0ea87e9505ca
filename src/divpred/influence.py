r"""The influence random variable X and its moments, exactly and without an n x n matrix.

For a fitted model with per-point gradients g_i (rows of G, shape (n, m)) and damped Hessian H
(shape (m, m)), the influence of point i on the loss at point j is (the paper's Lemma 3)

    K_ij = X(z_i, z_j) = -g_j^T H^{-1} g_i,      K = -G H^{-1} G^T   (symmetric).

The paper's potential is the population variance of K over the N = n (n - 1) ordered pairs
i != j. With H = L L^T and Y = G L^{-T} (so K = -Y Y^T):

    S1 = 1^T K 1 - tr K = -||Y^T 1||^2 + sum_i ||y_i||^2
    S2 = ||K||_F^2 - sum_i K_ii^2 = ||Y^T Y||_F^2 - sum_i ||y_i||^4
    E[X] = S1 / N,   V[X] = S2 / N - (S1 / N)^2.

Y^T Y, Y^T 1 and the sums over ||y_i|| accumulate over row blocks, so memory is
O(chunk m + m^2) and time O(n m^2 + m^3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from ._rowpass import add_syrk_upper
from ._validation import MIN_POINTS, check_features, check_labels
from .models import _softmax as sm
from .models._softmax import DEFAULT_CHUNK, _single_threaded_blas

__all__ = [
    "InfluenceSummary",
    "influence_kurtosis",
    "influence_matrix",
    "influence_moments",
    "influence_summary",
    "influence_variance",
    "self_influence",
]


def _check_data(model, X, y):
    X = check_features(X)
    y = check_labels(y, X.shape[0])
    if X.shape[0] < MIN_POINTS:
        raise ValueError(
            f"need at least {MIN_POINTS} points for pairwise influences, got {X.shape[0]}"
        )
    return X, y


def hessian_factor(model, X) -> np.ndarray:
    """Lower Cholesky factor L of the damped Hessian H = L L^T on ``X``, shape (m, m)."""
    return _cholesky(model.hessian(X))


def _cholesky(H: np.ndarray) -> np.ndarray:
    try:
        return linalg.cholesky(H, lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise ValueError(
            "the damped Hessian is not positive definite; use damping > 0 or alpha > 0"
        ) from None


def whitened_gradients(model, X, y, L: np.ndarray, *, chunk_size: int = DEFAULT_CHUNK):
    """Yield (slice, Y_chunk) with Y = G L^{-T} over row blocks of ``X``."""
    n = X.shape[0]
    # A triangular product with L^{-1} (TRMM, computed once), not a triangular solve per
    # block: at n = 10^6, m = 123 the solves took twice as long as the products. L^{-1} of the
    # Cholesky factor of a damped Hessian is well conditioned (cond(L) = sqrt(cond(H))), and
    # V agrees with the solve form to 1e-15 (tests/test_influence_core.py).
    Linv = linalg.solve_triangular(L, np.eye(L.shape[0]), lower=True, check_finite=False)
    for start in range(0, n, chunk_size):
        sl = slice(start, min(start + chunk_size, n))
        G = model.per_point_gradients(X[sl], y[sl])
        # G.T is Fortran-ordered, so BLAS multiplies it in place: Y^T = L^{-1} G^T
        yield sl, blas.dtrmm(1.0, Linv, G.T, side=0, lower=1, overwrite_b=1).T


def influence_matrix(model, X, y) -> np.ndarray:
    """The full influence matrix K_ij = -g_j^T H^{-1} g_i, shape (n, n). Small n only.

    Parameters
    ----------
    model : fitted estimator with ``per_point_gradients(X, y)`` and ``hessian(X)``
        (e.g. :class:`~divpred.MultinomialLogit`).
    X : array-like of shape (n, d)
    y : array-like of shape (n,)
    """
    X, y = _check_data(model, X, y)
    G = model.per_point_gradients(X, y)
    H = model.hessian(X)
    HinvGt = linalg.cho_solve(linalg.cho_factor(H, lower=True), G.T)
    return -G @ HinvGt


@dataclass(frozen=True)
class InfluenceSummary:
    """Sufficient statistics of K over the ordered pairs i != j.

    Attributes
    ----------
    n, n_params : number of points and of (reduced) parameters m.
    pair_sum : S1, the sum of K_ij over i != j.
    pair_sum_sq : S2, the sum of K_ij^2 over i != j.
    """

    n: int
    n_params: int
    pair_sum: float
    pair_sum_sq: float

    @property
    def n_pairs(self) -> int:
        return self.n * (self.n - 1)

    @property
    def mean(self) -> float:
        """E[X] = S1 / N."""
        return self.pair_sum / self.n_pairs

    @property
    def variance(self) -> float:
        """V[X] = S2 / N - (S1 / N)^2 (population variance over ordered pairs)."""
        return self.pair_sum_sq / self.n_pairs - self.mean**2


def influence_summary(model, X, y, *, chunk_size: int = DEFAULT_CHUNK) -> InfluenceSummary:
    """S1 and S2 of the module docstring, computed in O(chunk m + m^2) memory."""
    X, y = _check_data(model, X, y)
    with _single_threaded_blas():
        return _influence_summary(model, X, y, chunk_size)


def _influence_summary(model, X, y, chunk_size: int) -> InfluenceSummary:
    from .models.multinomial import MultinomialLogit

    if isinstance(model, MultinomialLogit) and X.shape[0] > model_params(model):
        return _multinomial_summary(model, X, y, chunk_size)
    L = hessian_factor(model, X)
    n = X.shape[0]
    m = L.shape[0]
    if n <= m:
        # Y Y^T (n x n) is the smaller Gram matrix here, and cheaper than Y^T Y.
        Y = np.vstack([Yc for _, Yc in whitened_gradients(model, X, y, L, chunk_size=chunk_size)])
        gram = Y @ Y.T
        sq_norms = np.diag(gram).copy()
        col_sum = Y.sum(axis=0)
        fro2 = float(np.sum(gram * gram))
    else:
        YtY = np.zeros((m, m))
        col_sum = np.zeros(m)
        sq_norms = np.empty(n)
        for sl, Yc in whitened_gradients(model, X, y, L, chunk_size=chunk_size):
            YtY += Yc.T @ Yc  # numpy calls SYRK for A.T @ A
            col_sum += Yc.sum(axis=0)
            sq_norms[sl] = np.einsum("ij,ij->i", Yc, Yc)
        fro2 = float(np.sum(YtY * YtY))
    pair_sum = -float(col_sum @ col_sum) + float(sq_norms.sum())
    pair_sum_sq = fro2 - float(np.sum(sq_norms**2))
    return InfluenceSummary(n=n, n_params=m, pair_sum=pair_sum, pair_sum_sq=pair_sum_sq)


def model_params(model) -> int:
    """m, the number of reduced parameters (C - 1)(d + 1) of a fitted MultinomialLogit."""
    return (model.classes_.shape[0] - 1) * (model.n_features_in_ + 1)


# Rows per block of the second pass of _multinomial_summary: the block of G (overwritten by
# Y = G L^{-T}) stays in L2 cache (n = 2^18, m = 123: 1024 rows about 20% faster than 2048).
_WHITEN_ROWS = 1024


def _multinomial_summary(model, X, y, chunk_size: int) -> InfluenceSummary:
    """:func:`influence_summary` of a MultinomialLogit in two passes over row blocks.

    The first computes the class probabilities of each block, from them the damped Hessian,
    the reduced residuals R_i = Q^T (p_i - e_{y_i}) of every row (n x B, kept) and
    sum_i g_i = vec(R^T Xa); the second builds each block of G = [R_i (x) xa_i] from the kept
    residuals, whitens it by L^{-1} (TRMM) and accumulates Y^T Y (SYRK, upper triangle) and
    ||y_i||^2, with Y^T 1 = L^{-1} sum_i g_i. Both passes write into buffers reused across
    blocks, the intercept column set once: nothing of the size of X is copied.
    Memory: n B + O(block m + m^2).
    """
    # X was checked by influence_summary: the model checks only its fit and the number of
    # features (on no rows: the finiteness scan of X is not repeated)
    model._check_X(X[:0])
    yidx = model.encode_labels(y)
    theta = model.theta_
    Q = sm.contrast_basis(theta.shape[0])
    n, d = X.shape
    D = d + 1
    B = Q.shape[1]
    m = B * D
    R = np.empty((n, B))
    grad_sum = np.zeros((D, B))
    acc = np.zeros((D, B * (B + 1) // 2 * D))
    Xa_buf = np.ones((min(chunk_size, n), D))
    for start in range(0, n, chunk_size):  # the blocks of model.hessian: the same H
        stop = min(start + chunk_size, n)
        Xc = Xa_buf[: stop - start]
        Xc[:, :d] = X[start:stop]
        Pc = sm.probabilities(Xc, theta)
        sm._gram_upper(Xc, sm._upper_hessian_weights(Pc, Q), out=acc)
        Rc = np.matmul(Pc, Q, out=R[start:stop])
        Rc -= Q[yidx[start:stop]]
        grad_sum += Xc.T @ Rc
    H = sm._assemble_blocks(acc, B) / n
    H[np.diag_indices_from(H)] += model.alpha + model.damping
    L = _cholesky(H)
    Linv = linalg.solve_triangular(L, np.eye(m), lower=True, check_finite=False)
    YtY = np.zeros((m, m))
    sq_sum = sq_sum2 = 0.0
    rows = min(chunk_size, _WHITEN_ROWS, n)
    G_buf = np.empty((rows, B, D))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        Rc = R[start:stop]
        Gv = G_buf[: stop - start]
        np.einsum("nb,nd->nbd", Rc, X[start:stop], out=Gv[:, :, :d])  # g_i = R_i (x) [x_i, 1]
        Gv[:, :, d] = Rc
        # G^T is Fortran-ordered: BLAS overwrites it with Y^T = L^{-1} G^T in the buffer, and
        # adds Y^T Y into the upper triangle of YtY (the lower one of its Fortran view)
        Yt = blas.dtrmm(1.0, Linv, Gv.reshape(-1, m).T, side=0, lower=1, overwrite_b=1)
        add_syrk_upper(Yt, YtY)
        sq = np.einsum("ji,ji->i", Yt, Yt)
        sq_sum += float(sq.sum())
        sq_sum2 += float(sq @ sq)
    col_sum = Linv @ grad_sum.T.ravel()
    pair_sum = sq_sum - float(col_sum @ col_sum)
    upper = np.triu(YtY, 1)
    fro2 = 2.0 * float(np.sum(upper * upper)) + float(np.sum(np.diag(YtY) ** 2))
    pair_sum_sq = fro2 - sq_sum2
    return InfluenceSummary(n=n, n_params=m, pair_sum=pair_sum, pair_sum_sq=pair_sum_sq)


def influence_variance(model, X, y, *, chunk_size: int = DEFAULT_CHUNK) -> float:
    """V[X], the paper's potential: population variance of K_ij over ordered pairs i != j.

    Computed without forming K (see the module docstring): O(n m^2 + m^3) time and
    O(chunk_size m + m^2) memory.

    Parameters
    ----------
    model : fitted estimator with ``per_point_gradients`` and ``hessian``
    X : array-like of shape (n, d), n >= 3
    y : array-like of shape (n,)

    Returns
    -------
    float
    """
    return influence_summary(model, X, y, chunk_size=chunk_size).variance


def self_influence(model, X, y, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """g_i^T H^{-1} g_i = -K_ii for every point, shape (n,)."""
    X, y = _check_data(model, X, y)
    with _single_threaded_blas():
        L = hessian_factor(model, X)
        out = np.empty(X.shape[0])
        for sl, Yc in whitened_gradients(model, X, y, L, chunk_size=chunk_size):
            out[sl] = np.einsum("ij,ij->i", Yc, Yc)
    return out


def influence_moments(
    model, X, y, orders=(1, 2, 3, 4), *, block_size: int = 1024, chunk_size: int = DEFAULT_CHUNK
) -> dict[int, float]:
    """Raw moments E[X^k] = (1/N) sum_{i != j} K_ij^k over ordered pairs.

    Orders 1 and 2 use the closed forms of the module docstring. Higher orders stream over row
    blocks of K = -Y Y^T: memory O(n m + block_size n), never the full n x n matrix.

    Returns
    -------
    dict mapping each order to its moment.
    """
    orders = tuple(int(k) for k in orders)
    if any(k < 1 for k in orders):
        raise ValueError(f"moment orders must be positive integers; got {orders}")
    X, y = _check_data(model, X, y)
    out: dict[int, float] = {}
    summary = influence_summary(model, X, y, chunk_size=chunk_size)
    high = [k for k in orders if k > 2]
    sums = {1: summary.pair_sum, 2: summary.pair_sum_sq}
    if high:
        with _single_threaded_blas():
            sums.update(_high_pair_sums(model, X, y, high, block_size, chunk_size))
    for k in orders:
        out[k] = sums[k] / summary.n_pairs
    return out


def influence_kurtosis(
    model, X, y, *, block_size: int = 1024, chunk_size: int = DEFAULT_CHUNK
) -> float:
    """Kurtosis of X over the ordered pairs i != j: E[(X - mu)^4] / V[X]^2 (3 for a Gaussian).

    The paper's Section 5 names kurtosis as the next moment to study beside V. The fourth
    central moment is summed directly over row blocks of K centred at mu = E[X] (not assembled
    from raw moments, whose alternating sum cancels badly when |mu| >> sqrt(V)): time
    O(n^2 m), memory O(n m + block_size n), never the full n x n matrix.

    Parameters
    ----------
    model : fitted estimator with ``per_point_gradients`` and ``hessian``
    X : array-like of shape (n, d), n >= 3
    y : array-like of shape (n,)
    block_size : int
        Rows of K per block.

    Returns
    -------
    float
        NaN when V[X] = 0 (all pairs have the same influence).
    """
    X, y = _check_data(model, X, y)
    summary = influence_summary(model, X, y, chunk_size=chunk_size)
    mean = summary.pair_sum / summary.n_pairs
    with _single_threaded_blas():
        sums = _high_pair_sums(model, X, y, (2, 4), block_size, chunk_size, center=mean)
    c2, c4 = sums[2] / summary.n_pairs, sums[4] / summary.n_pairs
    return float(c4 / c2**2) if c2 > 0 else float("nan")


def _high_pair_sums(
    model, X, y, high, block_size: int, chunk_size: int, *, center: float = 0.0
) -> dict[int, float]:
    """sum_{i != j} (K_ij - center)^k for each k in ``high``, streaming over row blocks of K."""
    L = hessian_factor(model, X)
    Y = np.vstack([Yc for _, Yc in whitened_gradients(model, X, y, L, chunk_size=chunk_size)])
    n = Y.shape[0]
    acc = dict.fromkeys(high, 0.0)
    top = max(high)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        Kb = -(Y[start:stop] @ Y.T)
        if center:
            Kb -= center
        Kb[np.arange(stop - start), np.arange(start, stop)] = 0.0  # i = j is not a pair
        # Repeated products instead of Kb**k (pow() per element for k > 2 is several times
        # slower than a multiplication).
        power = Kb.copy()
        for k in range(2, top + 1):
            power *= Kb
            if k in acc:
                acc[k] += float(np.sum(power))
    return acc
