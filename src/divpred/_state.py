"""Quantities of a fitted multinomial model on a data set, shared by the delta-score methods."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import linalg

from ._rowpass import GradientRowStats, default_chunk_rows, gradient_row_stats, strictly_lower
from ._validation import MIN_POINTS, check_features, check_labels
from .models import _softmax as sm
from .models._alpha import fitted_alpha

_FEW_ROWS_BYTES = 64 * 2**20


@dataclass
class FittedState:
    """A fitted :class:`~divpred.MultinomialLogit` evaluated on (X, y), in reduced coordinates.

    Shapes: n points, D = d + 1, C classes, B = C - 1, m = B D.
    """

    Xa: np.ndarray  # (n, D)
    yidx: np.ndarray  # (n,)
    theta: np.ndarray  # (C, D)
    mu: float  # alpha + damping, the isotropic part of the influence Hessian
    # Rows per block in the chunked passes over G (None: blocks of at most 16 MB); the results
    # do not depend on it beyond rounding.
    chunk_size: int | None = None
    # Accumulate sum_i d'_i g_i g_i^T in the pass that V needs, because fast scores will follow.
    for_fast_scores: bool = False
    # Xa Xa^T when the caller has it (a sub-matrix of the full data's, in the Purifier)
    input_gram: np.ndarray | None = None
    Q: np.ndarray = field(init=False)  # (C, B)

    def __post_init__(self):
        self.Q = sm.contrast_basis(self.theta.shape[0])

    @classmethod
    def from_model(
        cls, model, X, y, *, for_fast_scores: bool = False, input_gram=None
    ) -> FittedState:
        X = check_features(X)
        y = check_labels(y, X.shape[0])
        if X.shape[0] < MIN_POINTS + 1:
            raise ValueError(
                f"need at least {MIN_POINTS + 1} points to score leave-one-out removals, "
                f"got {X.shape[0]}"
            )
        model._check_X(X[:0])  # its fit and the number of features; X itself is checked
        return cls(
            Xa=sm.augment(X),
            yidx=model.encode_labels(y),
            theta=model.theta_,
            mu=fitted_alpha(model) + float(model.damping),
            for_fast_scores=for_fast_scores,
            input_gram=input_gram,
        )

    @property
    def n(self) -> int:
        return self.Xa.shape[0]

    @property
    def D(self) -> int:
        return self.Xa.shape[1]

    @property
    def B(self) -> int:
        return self.Q.shape[1]

    @property
    def m(self) -> int:
        return self.B * self.D

    @property
    def chunk_rows(self) -> int:
        return self.chunk_size if self.chunk_size is not None else default_chunk_rows(self.m)

    @cached_property
    def P(self) -> np.ndarray:
        """Class probabilities, (n, C)."""
        return sm.probabilities(self.Xa, self.theta)

    @cached_property
    def R(self) -> np.ndarray:
        """Reduced residuals Q^T (p_i - e_{y_i}), (n, B)."""
        return sm.residuals(self.P, self.yidx) @ self.Q

    @cached_property
    def W(self) -> np.ndarray:
        """Per-point class-block Hessian weights Q^T W_i Q, (n, B, B)."""
        return sm.hessian_weights(self.P, self.Q)

    @cached_property
    def G(self) -> np.ndarray:
        """Per-point gradients g_i = R_i (x) xa_i, (n, m)."""
        return sm.kron_rows(self.R, self.Xa)

    @cached_property
    def H_data(self) -> np.ndarray:
        """Mean data Hessian (1/n) sum_i h_i without the isotropic term, (m, m); from the
        design's pair products when the fast scores build them anyway (the same sum in one
        GEMM of half the multiplications, equal to rounding)."""
        pairs = self.pair_products if self.for_fast_scores else None
        return sm.weighted_block_gram(self.Xa, self.W, pairs=pairs) / self.n

    @cached_property
    def H(self) -> np.ndarray:
        """Damped influence Hessian H = H_data + mu I, (m, m)."""
        return self.H_data + self.mu * np.eye(self.m)

    @cached_property
    def cho(self) -> np.ndarray:
        """The lower Cholesky factor of H (``scipy.linalg.cho_factor``'s array: the same
        LAPACK call without its wrapper's checks; the upper triangle is not cleaned)."""
        try:
            return sm.cholesky_factor(self.H)
        except linalg.LinAlgError:
            raise ValueError(
                "the damped Hessian is not positive definite; use damping > 0 or alpha > 0"
            ) from None

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """H^{-1} rhs for rhs of shape (m,) or (m, k)."""
        return sm.cholesky_solve(self.cho, rhs)

    @cached_property
    def Hinv(self) -> np.ndarray:
        """H^{-1}, (m, m), symmetric: the chunked passes multiply blocks of G by it."""
        return inverse_from_cholesky(self.cho)

    @cached_property
    def HinvGt(self) -> np.ndarray:
        """H^{-1} G^T, (m, n). Small n only (the exact and fast2 paths)."""
        return self.solve(self.G.T)

    @cached_property
    def row_stats(self) -> GradientRowStats:
        """S = G^T G, d'_i, xa_i . (H^{-1} g_i)_a (and sum_i d'_i g_i g_i^T when
        ``for_fast_scores``, unless ``few_rows``: the fast scores then form
        H^{-1} (that sum) H^{-1} from the rows) from one row-chunked pass: nothing n x m is held."""
        return gradient_row_stats(self, with_dgram=self.for_fast_scores and not (
            self.binary_dual or self.few_rows))

    @cached_property
    def pair_products(self) -> np.ndarray | None:
        """xa_ik xa_il for k <= l, (n, D (D + 1) / 2), for the quadratic forms of the fast
        scores, where they pay (:func:`~divpred.models._softmax.pair_products`, else None)."""
        return sm.pair_products(self.Xa, self.B * (self.B + 1) // 2)

    @cached_property
    def HinvS(self) -> np.ndarray:
        """H^{-1} S with S = G^T G, (m, m): V (the record) and the fast scores share it."""
        return self.Hinv @ self.row_stats.S

    @cached_property
    def col(self) -> np.ndarray:
        """sum_i g_i, (m,)."""
        return (self.R.T @ self.Xa).ravel()

    @property
    def self_influence(self) -> np.ndarray:
        """d'_i = g_i^T H^{-1} g_i = -K_ii, (n,)."""
        if self.binary_dual:
            r = self.R[:, 0]
            return r * np.diag(self.Mx_dual) * r
        return self.row_stats.dprime

    @cached_property
    def Gm(self) -> np.ndarray:
        """Gram matrix Xa Xa^T, (n, n)."""
        return self.Xa @ self.Xa.T if self.input_gram is None else self.input_gram

    @cached_property
    def Mx_dual(self) -> np.ndarray:
        """Xa H^{-1} Xa^T for a binary model (B = 1), from n x n algebra only, (n, n)."""
        return dual_gram(self.Gm, self.W[:, 0, 0] / self.n, self.mu)

    @property
    def few_rows(self) -> bool:
        """n < 2 m: the symmetric m x m products of the fast scores are then cheaper as one
        SYRK of n rows of H^{-1}-transformed gradients (n m^2 / 2) than as m x m products (m^3
        each); see ``scores._first_order_terms`` and ``_fast2_primal``. Only while those n x m
        rows take at most ``_FEW_ROWS_BYTES`` (fast1 at large n holds nothing n x m)."""
        return self.n < 2 * self.m and 8 * self.n * self.m <= _FEW_ROWS_BYTES

    @property
    def binary_dual(self) -> bool:
        """Binary model with fewer points than parameters: the n x n forms are the cheaper ones."""
        return self.B == 1 and self.n < self.D and self.mu > 0

    @cached_property
    def A1_dual(self) -> np.ndarray:
        """A1 = Mx R of a binary model (see ``binary_dual``), A1_ij = xa_i^T H^{-1} g_j, so
        that the influence matrix is K = -R A1, R = diag(r); (n, n)."""
        return self.Mx_dual * self.R[:, 0][None, :]

    @cached_property
    def pair_sums(self) -> tuple[float, float]:
        """S1 = sum_{i != j} K_ij and S2 = sum_{i != j} K_ij^2, without an n x n matrix unless
        ``binary_dual`` makes it the cheaper form."""
        if self.binary_dual:  # K_ij = -r_i A1_ij: its sums from two row reductions of A1
            r, A1, d = self.R[:, 0], self.A1_dual, self.self_influence
            S1 = -(r @ A1.sum(axis=1)) + d.sum()
            S2 = (r * r) @ np.einsum("ij,ij->i", A1, A1) - d @ d
            return float(S1), float(S2)
        d = self.self_influence
        HinvS = self.HinvS
        S1 = -self.col @ (self.Hinv @ self.col) + d.sum()
        S2 = np.sum(HinvS * HinvS.T) - np.sum(d * d)
        return float(S1), float(S2)

    @cached_property
    def variance(self) -> float:
        """V[X] over the ordered pairs i != j."""
        return float(variance_from_sums(*self.pair_sums, self.n))

    def losses(self) -> np.ndarray:
        """Per-point cross-entropy -log p_{y_i}(x_i), (n,)."""
        return -np.log(np.clip(self.P[np.arange(self.n), self.yidx], 1e-300, None))

    def train_accuracy(self) -> float:
        return float(np.mean(np.argmax(self.P, axis=1) == self.yidx))


def inverse_from_cholesky(L: np.ndarray) -> np.ndarray:
    """A^{-1} (symmetric, full) from the lower Cholesky factor L of A (the lower triangle of
    ``L`` is read): LAPACK potri, half the work of solving against the identity."""
    inv, info = linalg.lapack.dpotri(L, lower=1)
    if info != 0:
        raise ValueError("the damped Hessian is singular; use damping > 0 or alpha > 0")
    # potri's result is Fortran-ordered with its lower triangle set: the C-ordered transpose
    # view has it as the upper one, mirrored by one masked copy (a third of the time of
    # np.tril + np.tril(., -1).T at m = 585; the same numbers)
    upper = inv.T
    out = upper.copy()
    np.copyto(out, upper.T, where=strictly_lower(out.shape[0]))
    return out


def dual_gram(Gm: np.ndarray, omega: np.ndarray, mu: float) -> np.ndarray:
    """Xa (Xa^T diag(omega) Xa + mu I)^{-1} Xa^T from the Gram matrix Gm = Xa Xa^T, (n, n).

    Push-through identity with U = diag(sqrt(omega)):
    (Gm - Gm U (mu I + U Gm U)^{-1} U Gm) / mu; one n x n Cholesky L, one triangular solve
    Z = L^{-1} U Gm and one symmetric product Z^T Z (SYRK: the result is exactly symmetric),
    no D x D work. LAPACK/BLAS are called on the Fortran views of the C-ordered n x n arrays
    (F^T for the symmetric F, (U Gm)^T = Gm U solved from the right: Z^T L^T = Gm U), so
    nothing n x n is copied into Fortran order (at n = 600 the copies and the left-side solve
    took about a fifth of the whole).
    """
    u = np.sqrt(np.clip(omega, 0.0, None))
    T = Gm * u[:, None]  # U Gm, C order
    F = T * u[None, :]
    F.flat[:: F.shape[0] + 1] += mu
    L = sm.cholesky_lower_inplace(F)
    Zt = linalg.blas.dtrsm(1.0, L, T.T, side=1, lower=1, trans_a=1, overwrite_b=1)
    M = Zt @ Zt.T  # Z^T Z, Z = Zt^T
    np.subtract(Gm, M, out=M)
    M /= mu
    return M


def pair_removal_delta(S1, S2, n, b, a, shift, renorm):
    """First-order delta(z) = V - (V_pair(z) + shift + renorm), with V - V_pair(z) written
    without cancellation (shared by the numpy, Dask and PyTorch fast1 paths).

    S1, S2 are the pair sums of K, ``b = sum_{j != z} K_zj`` and ``a = sum_{j != z} K_zj^2``
    (arrays over z), so S1_z = S1 - 2 b, S2_z = S2 - 2 a and, with N = n (n-1),
    N' = (n-1)(n-2):  V - V_pair = (2/N')[(a - S2/n) - (b - S1/n)(S1/N + S1_z/N')].
    Subtracting V_pair from V directly would lose about log10(n) digits of the O(V/n) result.
    """
    N = n * (n - 1.0)
    Np = (n - 1.0) * (n - 2.0)
    S1z = S1 - 2.0 * b
    v_minus_pair = (2.0 / Np) * ((a - S2 / n) - (b - S1 / n) * (S1 / N + S1z / Np))
    return v_minus_pair - shift - renorm


def variance_from_sums(pair_sum, pair_sum_sq, n):
    """V = S2/N - (S1/N)^2 with N = n (n - 1); works elementwise on arrays."""
    N = n * (n - 1.0)
    mean = pair_sum / N
    return pair_sum_sq / N - mean * mean
