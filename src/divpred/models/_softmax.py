"""Closed-form pieces of the multinomial logistic (softmax) model, vectorised over points.

Notation used throughout divpred
--------------------------------
``Xa`` is the augmented design ``[X, 1]`` of shape (n, D) with D = d + 1 (intercept last).
``theta`` has shape (C, D); its flattened order is row-major, ``theta.ravel()[c * D + j]`` is the
weight of feature j (j = d: the intercept) for class c, so m_full = C * D.

Reduced (contrast) coordinates: the softmax is invariant to ``theta + 1 v^T``, so only the part of
theta orthogonal to the all-ones class vector matters. With ``Q`` a (C, C-1) matrix of orthonormal
columns orthogonal to 1, ``phi = Q^T theta`` has shape (C-1, D) and flattened order
``phi.ravel()[a * D + j]``, m = (C-1) * D. Per-point gradients and Hessians in these coordinates:

    g_i = Q^T (p_i - e_{y_i}) (x) xa_i,        h_i = (Q^T W_i Q) (x) xa_i xa_i^T,
    W_i = diag(p_i) - p_i p_i^T,

and every influence computed in them equals the full C * D computation with the same isotropic
damping (see ``docs/math.md``). Passing ``Q = I_C`` gives the full coordinates.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import numpy as np
from scipy import linalg

DEFAULT_CHUNK = 8192  # rows per block in chunked loops: keeps blocks of G well under 100 MB
# Rows per GEMM in the weighted Gram: the stacked weighted copies of a block (rows x K D
# doubles) stay within about 1 MB, i.e. in L2 (D = 41, K = 6: 512 rows, 20-30% faster than 2048
# rows at n = 8192 on the development machine); never fewer than 512 (large D needs long GEMMs).
_GRAM_BUFFER_BYTES = 2**20
_GRAM_MIN_ROWS, _GRAM_MAX_ROWS = 512, 2048

_BLAS_CONTROLLER = None
_BLAS_LIMITED = threading.local()  # .depth: this thread's open _single_threaded_blas blocks


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run the block with one BLAS thread (restored on exit).

    The chunked loops here are many GEMMs with one small dimension (d + 1 or m). On the 2-core
    machine this was measured on, threaded OpenBLAS gained at most 1.5x on such calls when the
    machine was idle and was 5-30x slower than one thread when another process used a core.
    A block nested in another of the same thread changes nothing (the limit is already 1 and
    the outer block restores it): it skips threadpoolctl, whose limit queries every loaded
    library (about 0.1 ms, paid by every Hessian of a small refit).
    """
    global _BLAS_CONTROLLER
    depth = getattr(_BLAS_LIMITED, "depth", 0)
    if depth:
        _BLAS_LIMITED.depth = depth + 1
        try:
            yield
        finally:
            _BLAS_LIMITED.depth = depth
        return
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    with _BLAS_CONTROLLER.limit(limits=1, user_api="blas"):
        _BLAS_LIMITED.depth = 1
        try:
            yield
        finally:
            _BLAS_LIMITED.depth = 0


def augment(X: np.ndarray) -> np.ndarray:
    """Return ``[X, 1]`` of shape (n, d + 1)."""
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])


def contrast_basis(n_classes: int) -> np.ndarray:
    """Orthonormal basis Q of shape (C, C-1) of the complement of the all-ones vector.

    Deterministic (Helmert-type): column a is proportional to (1, ..., 1, -(a+1), 0, ..., 0)
    with a+1 ones, so the basis does not depend on a random seed or a LAPACK version.
    """
    C = n_classes
    Q = np.zeros((C, C - 1))
    for a in range(C - 1):
        Q[: a + 1, a] = 1.0
        Q[a + 1, a] = -(a + 1.0)
        Q[:, a] /= np.sqrt((a + 1.0) * (a + 2.0))
    return Q


def log_probabilities(Xa: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Log class probabilities, shape (n, C), for ``theta`` of shape (C, D)."""
    return _log_softmax_rows(Xa @ theta.T)


def _log_softmax_rows(Z: np.ndarray) -> np.ndarray:
    """``scipy.special.log_softmax(Z, axis=1)`` with the same result, overwriting ``Z``.

    Skips SciPy's array-API dispatch and copies. For C <= 7 columns the row max and row sum run
    column by column (numpy reduces a row of fewer than 8 numbers sequentially too, so the
    result is bitwise identical), which is about twice as fast as an axis-1 reduction over
    short rows.
    """
    C = Z.shape[1]
    if 1 < C < 8:
        zmax = Z[:, 0].copy()
        for c in range(1, C):
            np.maximum(zmax, Z[:, c], out=zmax)
    else:
        zmax = Z.max(axis=1)
    zmax[~np.isfinite(zmax)] = 0.0
    Z -= zmax[:, None]
    E = np.exp(Z)
    if 1 < C < 8:
        lse = E[:, 0].copy()
        for c in range(1, C):
            lse += E[:, c]
    else:
        lse = E.sum(axis=1)
    with np.errstate(divide="ignore"):
        np.log(lse, out=lse)
    Z -= lse[:, None]
    return Z


def probabilities(Xa: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Class probabilities p_i = softmax(theta xa_i), shape (n, C)."""
    return np.exp(log_probabilities(Xa, theta))


def point_losses(Xa: np.ndarray, theta: np.ndarray, yidx: np.ndarray) -> np.ndarray:
    """Cross-entropy L_i = -log p_{i, y_i}, shape (n,)."""
    logp = log_probabilities(Xa, theta)
    return -logp[np.arange(Xa.shape[0]), yidx]


def residuals(P: np.ndarray, yidx: np.ndarray) -> np.ndarray:
    """p_i - e_{y_i}, shape (n, C)."""
    R = P.copy()
    R[np.arange(P.shape[0]), yidx] -= 1.0
    return R


def kron_rows(R: np.ndarray, Xa: np.ndarray) -> np.ndarray:
    """Row-wise Kronecker product: out[i] = R[i] (x) Xa[i], shape (n, R.shape[1] * D)."""
    n = Xa.shape[0]
    # einsum without a summed index forms the same products as the broadcast R[:, :, None] *
    # Xa[:, None, :], 1.5-2x faster for rows of a few dozen features (SD-K, digits)
    return np.einsum("nb,nd->nbd", R, Xa).reshape(n, -1)


def point_gradients(P: np.ndarray, yidx: np.ndarray, Xa: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Per-point loss gradients g_i = Q^T (p_i - e_{y_i}) (x) xa_i, shape (n, Q.shape[1] * D)."""
    return kron_rows(residuals(P, yidx) @ Q, Xa)


def hessian_weights(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Per-point class-block weights Q^T W_i Q, shape (n, B, B) with B = Q.shape[1]:
    :func:`_hessian_weight_entries` at every pair (a, b)."""
    B = Q.shape[1]
    return _hessian_weight_entries(P, Q, *_all_pairs(B)).reshape(P.shape[0], B, B)


def _upper_hessian_weights(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """The entries a <= b of ``hessian_weights(P, Q)``, shape (n, B (B + 1) / 2), row-major:
    :func:`_hessian_weight_entries` at the pairs a <= b."""
    return _hessian_weight_entries(P, Q, *_upper_pairs(Q.shape[1]))


def _hessian_weight_entries(P: np.ndarray, Q: np.ndarray, ia: np.ndarray,
                            ib: np.ndarray) -> np.ndarray:
    """Entries (ia[k], ib[k]) of Q^T W_i Q, W_i = diag(p_i) - p_i p_i^T: shape (n, len(ia)),
    for P of shape (n, C) and Q of shape (C, B).

    Q^T diag(p) Q = sum_c p_c q_c q_c^T with q_c the c-th row of Q: one GEMM of P against
    the (C, len(ia)) products q_c,ia q_c,ib (the contraction einsum's optimizer chose, without
    its path search, which cost 0.1-0.3 ms per call: thousands of calls per run in small
    refits), minus (Q^T p_i)_ia (Q^T p_i)_ib. The layout is the caller's: every pair
    (:func:`hessian_weights`) or a <= b (:func:`_upper_hessian_weights`).
    """
    QP = P @ Q  # Q^T p_i
    return P @ (Q[:, ia] * Q[:, ib]) - QP[:, ia] * QP[:, ib]


@functools.lru_cache(maxsize=32)
def _all_pairs(B: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) for every entry of a B x B matrix in row-major order, computed once per B
    (read-only, as every caller shares the arrays)."""
    ia, ib = np.divmod(np.arange(B * B), B)
    ia.flags.writeable = ib.flags.writeable = False
    return ia, ib


@functools.lru_cache(maxsize=32)
def _upper_pairs(B: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(B)``, computed once per B (it is asked for at every Hessian build;
    read-only, as every caller shares the arrays)."""
    ia, ib = np.triu_indices(B)
    ia.flags.writeable = ib.flags.writeable = False
    return ia, ib


def _gram_upper(Xa: np.ndarray, Wu: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Accumulate ``[Xa^T diag(Wu[:, k]) Xa for k]`` side by side, shape (D, K D).

    One GEMM per block of rows against the K weighted copies of the block stacked column-wise
    (a buffer reused across blocks and small enough to stay in cache). The copies are formed
    by einsum (the products of the broadcast Wu[:, :, None] * Xa[:, None, :], bitwise, at
    1.5-2x its speed for D of a few dozen: a third of the Hessian's time at SD-K, n = 500).
    """
    n, D = Xa.shape
    K = Wu.shape[1]
    block = min(max(_GRAM_BUFFER_BYTES // (8 * K * D), _GRAM_MIN_ROWS), _GRAM_MAX_ROWS)
    if n <= block:  # one block: no buffers to set up
        prod = Xa.T @ np.einsum("nk,nd->nkd", Wu, Xa).reshape(n, K * D)
        if out is None:
            return prod
        out += prod
        return out
    if out is None:
        out = np.zeros((D, K * D))
    bs = min(block, n)
    if bs == 0:
        return out
    buf = np.empty((bs, K, D))
    prod = np.empty((D, K * D))
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        Xb = Xa[start:stop]
        Z = buf[: stop - start]
        np.einsum("nk,nd->nkd", Wu[start:stop], Xb, out=Z)
        np.matmul(Xb.T, Z.reshape(stop - start, K * D), out=prod)
        out += prod
    return out


def _assemble_blocks(acc: np.ndarray, B: int) -> np.ndarray:
    """Symmetric (B D, B D) matrix from the (D, K D) upper blocks of :func:`_gram_upper`."""
    D = acc.shape[0]
    out = np.empty((B * D, B * D))
    for k, (a, b) in enumerate(zip(*_upper_pairs(B), strict=True)):
        blk = acc[:, k * D : (k + 1) * D]
        out[a * D : (a + 1) * D, b * D : (b + 1) * D] = blk
        if b != a:
            out[b * D : (b + 1) * D, a * D : (a + 1) * D] = blk.T
    return out


def weighted_block_gram(Xa: np.ndarray, Wts: np.ndarray,
                        pairs: np.ndarray | None = None) -> np.ndarray:
    """sum_i Wts_i (x) xa_i xa_i^T as an (B D, B D) matrix, for Wts of shape (n, B, B).

    Block (a, b) is ``Xa^T diag(Wts[:, a, b]) Xa``; only a <= b is computed (symmetry).
    ``pairs``: :func:`pair_products` of ``Xa`` when the caller has them (one GEMM, equal to
    rounding).
    """
    B = Wts.shape[1]
    ia, ib = _upper_pairs(B)
    Xa = np.asarray(Xa, dtype=np.float64)
    Wu = np.ascontiguousarray(Wts[:, ia, ib], dtype=np.float64)
    if pairs is not None:
        return _gram_from_pairs(pairs, Wu, Xa.shape[1], B)
    return _assemble_blocks(_gram_upper(Xa, Wu), B)


# Pair products of the design for the Hessians of a Newton fit: used when the weighted Gram
# has at least this many blocks (C >= 5 classes) and the products of all rows fit in this
# budget. Each block Xa^T diag(w) Xa is symmetric, so one GEMM of the n x D (D + 1) / 2
# products with the n x K weights does half the multiplications of the per-block GEMMs, in one
# long BLAS call (digits, n = 500, D = 65, K = 45: about 4x faster per Hessian).
_PAIR_MIN_BLOCKS = 10
_PAIR_BYTES = 64 * 2**20


def pair_products(Xa: np.ndarray, n_blocks: int) -> np.ndarray | None:
    """xa_ik xa_il for k <= l, shape (n, D (D + 1) / 2), or None where not worth it.

    Only the design enters, so a fit computes them once for all its Newton steps (see
    :func:`data_hessian`), and the fast scores once for their quadratic forms (see
    :func:`block_quadratic_forms_many`); None when there are fewer than ``_PAIR_MIN_BLOCKS``
    weighted blocks or the array would exceed ``_PAIR_BYTES``.

    The result is the transpose of a C-ordered (D (D + 1) / 2, n) array, built one feature k
    at a time as the rows xa_k o xa_l (l >= k) of contiguous length-n columns: 4x faster than
    gathering the columns of ``Xa`` twice (digits, n = 1257), and the GEMMs that read it give
    the same bits (BLAS packs either layout alike).
    """
    n, D = Xa.shape
    if n_blocks < _PAIR_MIN_BLOCKS or 8 * n * D * (D + 1) // 2 > _PAIR_BYTES:
        return None
    cols = np.ascontiguousarray(Xa.T)
    out = np.empty((D * (D + 1) // 2, n))
    row = 0
    for k in range(D):
        np.multiply(cols[k:], cols[k], out=out[row : row + D - k])
        row += D - k
    return out.T


def _gram_from_pairs(pairs: np.ndarray, Wu: np.ndarray, D: int, B: int) -> np.ndarray:
    """sum_i W_i (x) xa_i xa_i^T, (B D, B D), from :func:`pair_products` and the weights
    ``Wu`` (n, K) of the blocks a <= b.

    Each block is symmetric: its D x D entries are gathered from its D (D + 1) / 2 products
    in one ``take`` and placed at (a, b) and, unchanged, at (b, a) by two block scatters
    (about twice as fast as scattering each product to its four positions: digits, D = 65).
    """
    upper = Wu.T @ pairs  # (K, D (D + 1) / 2): entry k <= l of each block
    blocks = np.take(upper, _symmetric_positions(D), axis=1)  # (K, D, D)
    ia, ib = _upper_pairs(B)
    out = np.empty((B, B, D, D))
    out[ia, ib] = blocks
    out[ib, ia] = blocks
    return out.transpose(0, 2, 1, 3).reshape(B * D, B * D)


@functools.lru_cache(maxsize=8)
def _symmetric_positions(D: int) -> np.ndarray:
    """(D, D) indices into the row-major upper triangle (k <= l) of a symmetric D x D matrix:
    entry (k, l) and (l, k) both read the triangle's entry of (min, max). Read-only."""
    iu, ju = np.triu_indices(D)
    out = np.empty((D, D), dtype=np.intp)
    out[iu, ju] = out[ju, iu] = np.arange(iu.size)
    out.flags.writeable = False
    return out


def data_hessian(
    Xa: np.ndarray,
    theta: np.ndarray,
    Q: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    pairs: np.ndarray | None = None,
    P: np.ndarray | None = None,
) -> np.ndarray:
    """Sum over points of w_i h_i (not divided by n), shape (m, m), chunked over rows.

    ``pairs``: :func:`pair_products` of ``Xa`` when the caller has them (the same sum in one
    GEMM, equal to rounding). ``P``: the class probabilities at ``theta``, (n, C), when the
    caller has them.
    """
    if pairs is not None:
        Wu = _upper_hessian_weights(probabilities(Xa, theta) if P is None else P, Q)
        if weights is not None:
            Wu *= weights[:, None]
        with _single_threaded_blas():
            return _gram_from_pairs(pairs, Wu, Xa.shape[1], Q.shape[1])
    return _data_hessian(Xa, Q, theta=theta, P=P, weights=weights, chunk_size=chunk_size)


def _data_hessian(
    Xa: np.ndarray,
    Q: np.ndarray,
    *,
    theta: np.ndarray | None = None,
    P: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    add_intercept: bool = False,
) -> np.ndarray:
    """:func:`data_hessian` from ``theta`` or from precomputed probabilities ``P`` (n, C).

    With ``add_intercept=True``, ``Xa`` is the plain X and each chunk is augmented on the fly
    (no (n, D) copy of X).
    """
    n = Xa.shape[0]
    D = Xa.shape[1] + (1 if add_intercept else 0)
    B = Q.shape[1]
    acc = np.zeros((D, B * (B + 1) // 2 * D))
    with _single_threaded_blas():
        for start in range(0, n, chunk_size):
            sl = slice(start, start + chunk_size)
            Xc = augment(Xa[sl]) if add_intercept else Xa[sl]
            Pc = probabilities(Xc, theta) if P is None else P[sl]
            Wu = _upper_hessian_weights(Pc, Q)
            if weights is not None:
                Wu *= weights[sl, None]
            _gram_upper(Xc, Wu, out=acc)
    return _assemble_blocks(acc, B)


_FORMS_ROWS = 512


def block_quadratic_forms(Xa: np.ndarray, M: np.ndarray, B: int) -> np.ndarray:
    """q_i[a, b] = xa_i^T M_ab xa_i for a symmetric M in (B, B) blocks of D: shape (n, B, B).

    One GEMM of ``Xa`` against the blocks a <= b side by side (M_ba = M_ab^T gives the same
    quadratic form).
    """
    return block_quadratic_forms_many(Xa, [M], B)[0]


def block_quadratic_forms_many(
    Xa: np.ndarray, Ms, B: int, *, pairs: np.ndarray | None = None
) -> list[np.ndarray]:
    """:func:`block_quadratic_forms` of several symmetric matrices in one GEMM.

    ``pairs``: :func:`pair_products` of ``Xa`` when the caller has them. Then
    xa^T M_ab xa = sum_{k <= l} xa_k xa_l (M_ab + M_ab^T)_kl (halved on the diagonal), one GEMM
    of the (n, D (D + 1) / 2) products by these upper triangles: half the multiplications, in
    one long BLAS call (digits, D = 65: about 3x faster).
    """
    D = Xa.shape[1]
    K = B * (B + 1) // 2
    if pairs is not None:
        iu, ju = np.triu_indices(D)
        stacked = np.stack(_upper_blocks(Ms, B, D))
        stacked = stacked + stacked.transpose(0, 2, 1)
        stacked[:, np.arange(D), np.arange(D)] *= 0.5
        upper = pairs @ stacked[:, iu, ju].T
    else:
        upper = stacked_quadratic_forms(Xa, upper_blocks_side_by_side(Ms, B, D))
    return [symmetric_from_upper(upper[:, j * K : (j + 1) * K], B) for j in range(len(Ms))]


def upper_blocks_side_by_side(Ms, B: int, D: int) -> np.ndarray:
    """The blocks M_ab, a <= b (row-major), of each (B D, B D) matrix in ``Ms`` side by side:
    shape (D, len(Ms) K D) with K = B (B + 1) / 2, the operand of
    :func:`stacked_quadratic_forms`."""
    return np.hstack(_upper_blocks(Ms, B, D))


def _upper_blocks(Ms, B: int, D: int) -> list[np.ndarray]:
    """[M_ab for M in Ms for a <= b], each (D, D) (views)."""
    ia, ib = _upper_pairs(B)
    return [M[a * D : (a + 1) * D, b * D : (b + 1) * D]
            for M in Ms for a, b in zip(ia, ib, strict=True)]


def stacked_quadratic_forms(Xa: np.ndarray, stacked: np.ndarray) -> np.ndarray:
    """out[i, j] = xa_i^T A_j xa_i for the (D, J D) blocks A_j side by side in ``stacked``:
    shape (n, J)."""
    n, D = Xa.shape
    J = stacked.shape[1] // D
    upper = np.empty((n, J))
    for start in range(0, n, _FORMS_ROWS):
        Xb = Xa[start : start + _FORMS_ROWS]
        # rows of (Xb @ stacked) dotted with xa_i as a batched product: with blocks of 512
        # rows the n x (J D) product stays in cache (about 2x faster than one einsum over
        # 8192 rows)
        Z = (Xb @ stacked).reshape(Xb.shape[0], J, D)
        upper[start : start + _FORMS_ROWS] = (Z @ Xb[:, :, None])[:, :, 0]
    return upper


def symmetric_from_upper(upper: np.ndarray, B: int) -> np.ndarray:
    """(n, B, B) symmetric matrices from their entries a <= b (row-major), (n, B (B + 1) / 2)."""
    ia, ib = _upper_pairs(B)
    q = np.empty((upper.shape[0], B, B))
    q[:, ia, ib] = upper
    q[:, ib, ia] = upper
    return q


def contract_forms(Qd: np.ndarray, R: np.ndarray) -> np.ndarray:
    """sum_b Qd_i[a, b] R_ib, shape (n, B): for Qd of a matrix A (see
    :func:`block_quadratic_forms`) and g_i = R_i (x) xa_i this is xa_i . (A g_i)_a."""
    return np.einsum("nab,nb->na", Qd, R)


def block_rows_dot(F: np.ndarray, Xa: np.ndarray) -> np.ndarray:
    """F_i (as B x D) times xa_i, for rows F_i of length B D: shape (n, B)."""
    n, D = Xa.shape
    return np.einsum("nbd,nd->nb", F.reshape(n, -1, D), Xa)


def hessian_shift_coefficients(P: np.ndarray, Q: np.ndarray, Qd: np.ndarray) -> np.ndarray:
    """Q^T W_i v_i with v_i = diag(Z_i) - 2 Z_i p_i, Z_i = Q Qd_i Q^T: shape (n, B).

    The third-derivative term: for a symmetric M with Qd_i[a, b] = xa_i^T M_ab xa_i,
    d<M, h_i>/d(phi) = (Q^T W_i v_i) (x) xa_i.
    """
    n, B = Qd.shape[0], Q.shape[1]
    QdQ = (Qd.reshape(n * B, B) @ Q.T).reshape(n, B, Q.shape[0])  # column c: Qd_i q_c
    # diag(Z_i)_c = q_c^T Qd_i q_c and (Z_i p_i)_c = (Q^T p_i)^T Qd_i q_c (Qd_i symmetric):
    # Z_i itself (C x C per point) is never formed
    v = np.einsum("cb,nbc->nc", Q, QdQ) - 2.0 * np.einsum("nb,nbc->nc", P @ Q, QdQ)
    Wv = P * v - P * np.sum(P * v, axis=1, keepdims=True)  # W_i v_i
    return Wv @ Q


def cholesky_factor(H: np.ndarray) -> np.ndarray:
    """``scipy.linalg.cho_factor(H, lower=True, check_finite=False)[0]`` for a symmetric
    positive definite H, (m, m): the same LAPACK potrf call on the same array (so the same
    factor, the upper triangle left as it was), without the wrapper's checks (which cost more
    than the factorisation at m of a few dozen). LinAlgError when H is not positive definite."""
    return _potrf_lower(H, overwrite=False)


def cholesky_solve(factor: np.ndarray, b: np.ndarray) -> np.ndarray:
    """H^{-1} b, b of shape (m,) or (m, k), from ``cholesky_factor(H)``: LAPACK potrs, as
    ``scipy.linalg.cho_solve((factor, True), b, check_finite=False)``."""
    return linalg.lapack.dpotrs(factor, b, lower=1)[0]


def cholesky_lower_inplace(F: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor of the symmetric positive definite C-ordered ``F``, (n, n),
    computed in F's memory (LAPACK potrf on the Fortran array F^T, equal to F but for
    rounding: its lower triangle is F's upper one), so nothing n x n is copied; only the
    lower triangle of the result is the factor. LinAlgError when F is not positive definite,
    as ``scipy.linalg.cholesky``."""
    return _potrf_lower(F.T, overwrite=True)


def _potrf_lower(A: np.ndarray, overwrite: bool) -> np.ndarray:
    """LAPACK potrf, lower factor, upper triangle left as it was; LinAlgError (the message of
    ``scipy.linalg.cholesky``) when A is not positive definite."""
    factor, info = linalg.lapack.dpotrf(A, lower=1, clean=0, overwrite_a=int(overwrite))
    if info != 0:
        raise linalg.LinAlgError(f"{info}-th leading minor not positive definite")
    return factor


def psd_factor(W: np.ndarray) -> np.ndarray:
    """U with U U^T = W for a stack of PSD (B, B) matrices (eigenvalues clipped at 0)."""
    if W.shape[-1] == 1:
        return np.sqrt(np.clip(W, 0.0, None))
    evals, evecs = np.linalg.eigh(W)
    return evecs * np.sqrt(np.clip(evals, 0.0, None))[..., None, :]
