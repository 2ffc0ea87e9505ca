r"""Row-chunked passes over the per-point gradients g_i = R_i (x) xa_i of a fitted model.

V and the fast1 scores need, besides m x m sums, only a few numbers per point. These passes
build G (n x m) one block of rows at a time and keep nothing n x m: memory is
O(chunk m + m^2 + n B^2) whatever n is.

First pass (:func:`gradient_row_stats`), with F_i = H^{-1} g_i:

    S = G^T G,  d'_i = g_i^T F_i = -K_ii,  tH_i[a] = xa_i . (F_i)_a,
    and, for the fast scores, Dg = sum_i d'_i g_i g_i^T (d'_i >= 0, so one SYRK of sqrt(d') G).

Second pass (:func:`score_row_stats`), with A2 = H^{-1} S H^{-1} and
M = H^{-1} G^T Phi G H^{-1} (both from the first pass's sums):

    s_i = g_i^T A2 g_i = sum_j K_ij^2,  tA_i[a] = xa_i . (A2 g_i)_a,
    Qd_i[a, b] = xa_i^T M_ab xa_i  (kept only as <Qd_i, W'_i> and the third-derivative
    coefficients Q^T W_i v_i of :func:`~divpred.models._softmax.hessian_shift_coefficients`).

The per-point terms come from B x B quadratic forms of the D-wide rows xa_i: for a symmetric
A in (B, B) blocks of D and g_i = R_i (x) xa_i, xa_i . (A g_i)_a = sum_b R_ib xa_i^T A_ab xa_i,
one GEMM of the row block by the B (B + 1) / 2 blocks a <= b of A (for H^{-1} in the first pass,
for A2 and M together in the second, which builds no block of G).

Everything else in fast1 is O(n B D) from these (see ``scores._first_order_terms``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from .models import _softmax as sm

_CHUNK_BYTES = 16 * 2**20  # one block of G (and of F = G H^-1) per chunk
# Rows per block of the first pass: the block of G (rows x m doubles, 1 MB at m = 123) stays in
# L2 for its two SYRKs
_SYRK_ROWS = 1024


def default_chunk_rows(m: int) -> int:
    """Rows per chunk: blocks of G of at most 16 MB, and never more than ``DEFAULT_CHUNK``."""
    return int(max(1, min(sm.DEFAULT_CHUNK, _CHUNK_BYTES // (8 * m))))


@dataclass(frozen=True)
class GradientRowStats:
    """Sums and per-point numbers of the first pass; shapes for n points, m = B D."""

    S: np.ndarray  # (m, m), G^T G
    dprime: np.ndarray  # (n,), g_i^T H^{-1} g_i
    tH: np.ndarray  # (n, B), xa_i . (H^{-1} g_i)_a
    dgram: np.ndarray | None  # (m, m), sum_i d'_i g_i g_i^T, when asked for


def _chunks(n: int, rows: int):
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


def _gradient_blocks(state):
    """Blocks of G of at most ``_SYRK_ROWS`` rows (and ``state.chunk_rows``), built into one
    buffer reused across blocks: yields (rows' slice, block (rows, B, D), its transpose
    (m, rows), Fortran-ordered so that BLAS reads it in place). Scaling the block in place
    scales the transpose; the next block overwrites both."""
    n, B, m = state.n, state.B, state.m
    rows = min(state.chunk_rows, _SYRK_ROWS, n)
    G_buf = np.empty((rows, B, state.D))
    for sl in _chunks(n, rows):
        Xc, Rc = state.Xa[sl], state.R[sl]
        Gv = G_buf[: Xc.shape[0]]
        np.einsum("nb,nd->nbd", Rc, Xc, out=Gv)  # g_i = R_i (x) xa_i
        yield sl, Gv, Gv.reshape(Xc.shape[0], m).T


def gradient_row_stats(state, with_dgram: bool) -> GradientRowStats:
    """The first pass of the module docstring over ``state`` (a :class:`FittedState`).

    The blocks of :func:`_gradient_blocks` (small enough to stay in cache between the SYRK of
    S, the scaling by sqrt(d'_i) and the SYRK of Dg); each SYRK adds into the upper triangle
    only, mirrored once at the end.
    """
    n, B, m = state.n, state.B, state.m
    S = np.zeros((m, m))
    dgram = np.zeros((m, m)) if with_dgram else None
    dprime = np.empty(n)
    tH = np.empty((n, B))
    Hinv_blocks = sm.upper_blocks_side_by_side([state.Hinv], B, state.D)  # once, not per block
    for sl, Gv, Gt in _gradient_blocks(state):
        Xc, Rc = state.Xa[sl], state.R[sl]
        add_syrk_upper(Gt, S)
        # xa_i . (H^{-1} g_i)_a from the B x B quadratic forms xa_i^T (H^{-1})_ab xa_i: a GEMM
        # of the D-wide block instead of the m-wide G by H^{-1} (2/3 of the work)
        qH = sm.symmetric_from_upper(sm.stacked_quadratic_forms(Xc, Hinv_blocks), B)
        tHc = sm.contract_forms(qH, Rc)
        dc = np.einsum("ia,ia->i", Rc, tHc)  # g_i . F_i with g_i = R_i (x) xa_i
        dprime[sl] = dc
        tH[sl] = tHc
        if dgram is not None:
            _add_scaled_syrk(Gv, Gt, dc, dgram)
    return GradientRowStats(S=_mirror_upper(S), dprime=dprime, tH=tH,
                            dgram=None if dgram is None else _mirror_upper(dgram))


def _add_scaled_syrk(Gv: np.ndarray, Gt: np.ndarray, dprime: np.ndarray, C: np.ndarray) -> None:
    """C += sum_i d'_i g_i g_i^T over one block (upper triangle) as the SYRK of the rows
    sqrt(d'_i) g_i (d'_i >= 0 but for rounding: clipped at 0); scales the block in place."""
    Gv *= np.sqrt(np.clip(dprime, 0.0, None))[:, None, None]
    add_syrk_upper(Gt, C)


def add_syrk_upper(At: np.ndarray, C: np.ndarray) -> None:
    """C += A^T A in the upper triangle of the C-ordered (m, m) ``C`` (the lower one of its
    Fortran view, updated in place by BLAS syrk), for the Fortran-ordered (m, rows) ``At``;
    the lower triangle of ``C`` is neither read nor meaningful."""
    out = blas.dsyrk(1.0, At, beta=1.0, c=C.T, trans=0, lower=1, overwrite_c=1)
    if not np.shares_memory(out, C):  # f2py copied C: not in place after all
        C[...] = out.T


def _mirror_upper(C: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle is that of ``C``, written into ``C`` (one
    masked copy: the numbers of np.triu(C) + np.triu(C, 1).T at a fifth of its time, m = 123)."""
    np.copyto(C, C.T, where=strictly_lower(C.shape[0]))
    return C


@functools.lru_cache(maxsize=8)
def strictly_lower(m: int) -> np.ndarray:
    """The (m, m) boolean mask of the entries below the diagonal (read-only)."""
    mask = np.tri(m, m, -1, dtype=bool)
    mask.flags.writeable = False
    return mask


def dprime_gram(state, dprime: np.ndarray) -> np.ndarray:
    """sum_i d'_i g_i g_i^T, (m, m): the first pass's ``dgram`` when it was not asked for
    (the same blocks and SYRKs, so the same matrix)."""
    m = state.m
    out = np.zeros((m, m))
    for sl, Gv, Gt in _gradient_blocks(state):
        _add_scaled_syrk(Gv, Gt, dprime[sl], out)
    return _mirror_upper(out)


@dataclass(frozen=True)
class ScoreRowStats:
    """Per-point numbers of the second pass."""

    s: np.ndarray  # (n,), g_i^T A2 g_i
    tA: np.ndarray  # (n, B), xa_i . (A2 g_i)_a
    qw: np.ndarray  # (n,), <Qd_i, W'_i> = <M, h_i>
    coef_h: np.ndarray  # (n, B), Q^T W_i v_i


def score_row_stats(state, A2: np.ndarray, M: np.ndarray) -> ScoreRowStats:
    """The second pass of the module docstring."""
    n, B = state.n, state.B
    s = np.empty(n)
    tA = np.empty((n, B))
    qw = np.empty(n)
    coef_h = np.empty((n, B))
    pairs = state.pair_products
    for sl in _chunks(n, state.chunk_rows):
        Xc = state.Xa[sl]
        # both matrices' quadratic forms in one GEMM of the D-wide block; no block of G
        QdA2, Qd = sm.block_quadratic_forms_many(Xc, [A2, M], B,
                                                 pairs=None if pairs is None else pairs[sl])
        tAc = sm.contract_forms(QdA2, state.R[sl])
        s[sl] = np.einsum("ia,ia->i", state.R[sl], tAc)
        tA[sl] = tAc
        qw[sl] = np.einsum("nab,nab->n", Qd, state.W[sl])
        coef_h[sl] = sm.hessian_shift_coefficients(state.P[sl], state.Q, Qd)
    return ScoreRowStats(s=s, tA=tA, qw=qw, coef_h=coef_h)

