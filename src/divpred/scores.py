r"""Leave-one-out variance scores delta(z) = V(Z) - V(Z \ z) for every point, and baselines.

All methods return one score per point; **larger means "remove first"**.

Exact semantics (the paper's purification code)
-----------------------------------------------
For a candidate z, the model without z is one Newton step from the fit,
``theta_{-z} = theta_hat + H^{-1} g_z / n`` (H damped), and on Z \ z at theta_{-z} the
gradients, the damped mean Hessian ``H_{-z} = (1/(n-1)) sum_{i != z} h_i(theta_{-z}) + mu I`` and
V are recomputed. ``delta(z) = V(Z) - V_{-z}``. ``method="exact"`` computes this for all z,
vectorised over candidates, either in the primal (m x m systems) or, when n (C-1) < m, in a dual
form with (n (C-1)) x (n (C-1)) systems (push-through identity
``J (mu I + J^T Omega J)^{-1} J^T = (1/mu) (A - A U (mu I + U^T A U)^{-1} U^T A)``,
``A = J J^T``, ``Omega = U U^T``). Both equal the brute force to rounding.

Fast scores
-----------
Notation: K = -G H^{-1} G^T, d_i = K_ii, r_z = sum_j K_zj, s_z = sum_j K_zj^2, S1, S2 the sums over
ordered pairs, N = n (n-1), N' = (n-1)(n-2), Phi = (2/N) (K - (S1/N) 1 1^T) with zero diagonal,
so that dV = <Phi, dK>; Delta_z = H^{-1} g_z / n.

* pair removal at fixed K (exact): S1_z = S1 - 2 (r_z - d_z), S2_z = S2 - 2 (s_z - d_z^2),
  V_pair(z) = S2_z / N' - (S1_z / N')^2, with r_z = -g_z^T H^{-1} G^T 1 and
  s_z = g_z^T H^{-1} S H^{-1} g_z, S = G^T G: no n x n matrix.
* model shift (first order): dV = c^T Delta_z with c = -2 sum_i h_i u_i
  + (1/n) sum_i (Q^T W_i v_i) (x) xa_i, where U = Phi G H^{-1} (rows u_i),
  M = H^{-1} G^T Phi G H^{-1}, Qd_i[a, b] = xa_i^T M_ab xa_i, Z_i = Q Qd_i Q^T and
  v_i = diag(Z_i) - 2 Z_i p_i (the second term is the third-derivative effect of the shift on H).
* Hessian renormalisation, first order: H_{-z} - H = (H_data - h_z) / (n - 1), so
  dV = [(1/n) sum_i <Qd_i, W'_i> - <Qd_z, W'_z>] / (n - 1).

``"fast1"`` = V_pair + model shift + renormalisation: O(n m^2 + m^3), no n x n matrix and no
n x m one (two passes over row blocks of G, :mod:`divpred._rowpass`). It is accurate when
n >> m and poor when n < m.

``"fast2"`` (semi-exact) makes the fixed-parameter part exact: with H~ = (n/(n-1)) H_data + mu I
and K~ = -G H~^{-1} G^T, removing z's Hessian term is the rank-B downdate H~ - B_z B_z^T,
B_z = (L_z (x) xa_z) / sqrt(n-1), W'_z = L_z L_z^T, so by Woodbury
K^(z)_ij = K~_ij - v_{z,i}^T Gamma_z v_{z,j}, v_{z,i} = B_z^T H~^{-1} g_i,
Gamma_z = (I - B_z^T H~^{-1} B_z)^{-1}; the sums over i != j (i, j != z) follow from
1^T K~ 1, ||K~||_F^2, K~ V_z and V_z^T V_z. The model shift is added to first order with z's own
gradient and Hessian terms removed: shift(z) = c^T Delta_z + 2 (W'_z U_z xa_z) . s_z
- (1/n) (Q^T W_z v_z) . s_z, s_z = Delta_z (as B x D) xa_z. Cost O(n^2 m + n m^2 + m^3) in
the primal form, memory O(n m) plus blocks of candidate rows (:mod:`divpred._fast2_primal`);
the binary dual form holds three n x n matrices (:mod:`divpred._fast2_dual`).

``"fast"`` picks fast1 when n >= ``FAST1_MIN_RATIO`` m (the first-order expansion in 1/n is then
accurate: Spearman >= 0.97 with exact on the paper's SD data) or when n > ``FAST2_MAX_N`` (fast2's
O(n^2 m) time, and the binary dual form's n x n matrices), and fast2 otherwise (n < m, e.g. images).
"""

from __future__ import annotations

import numbers
import os

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_random_state

from ._choices import DELTA_METHODS
from ._fast2 import fast2_fixed_and_shift
from ._rowpass import dprime_gram, score_row_stats
from ._state import FittedState, pair_removal_delta
from .models._softmax import _single_threaded_blas, hessian_shift_coefficients, psd_factor

__all__ = ["DELTA_METHODS", "delta_scores"]

FAST_METHODS = ("fast", "fast1", "fast2")
FAST1_MIN_RATIO = 5.0
# fast2 costs O(n^2 m) in the primal form and its binary dual holds three n x n matrices
# (4000^2 * 3 * 8 B = 384 MB); beyond this n, fast1
FAST2_MAX_N = 4000
_CHUNK_BYTES = 256 * 2**20  # working memory per batch of candidates in the exact path


def delta_scores(
    model,
    X,
    y,
    method: str = "fast",
    *,
    random_state=None,
    return_info: bool = False,
    exact_form: str = "auto",
    n_jobs: int | None = None,
):
    r"""Score every point of (X, y) for removal; larger scores are removed first.

    Parameters
    ----------
    model : fitted :class:`~divpred.MultinomialLogit`
        Fitted on (X, y) (the scores are defined at its minimiser).
    X : array-like of shape (n, d)
    y : array-like of shape (n,)
    method : str, default="fast"
        ``"exact"``: delta(z) = V(Z) - V(Z \ z) with the paper's one-step Newton model.
        ``"refit"``: delta(z) with a true leave-one-out refit of ``model`` (warm-started).
        ``"fast"``, ``"fast1"``, ``"fast2"``: see the module docstring.
        ``"self_influence"``: g_z^T H^{-1} g_z (the paper's top_i). ``"loss"``: training loss.
        ``"random"``: uniform random scores from ``random_state``.
    random_state : int, Generator or None
        Only for ``"random"``.
    return_info : bool, default=False
        Also return a dict with the method actually used (``"fast"`` resolves to fast1/fast2),
        ``variance`` (V(Z)) where it was computed, and the form of the exact path.
    exact_form : {"auto", "primal", "dual"}
        Forces a form of the exact computation (for testing).
    n_jobs : int or None, default=None
        Workers for the candidates of ``"exact"`` (None: 1; -1: all cores), each with
        single-threaded BLAS; the scores are bitwise the same for any ``n_jobs``.

    Returns
    -------
    scores : ndarray of shape (n,)
    info : dict, only with ``return_info=True``
    """
    if method not in DELTA_METHODS:
        raise ValueError(f"method must be one of {DELTA_METHODS}; got {method!r}")
    # Threaded OpenBLAS was 10-30x slower than one thread here on 2 cores whenever the other
    # core was busy, for SD sizes (m = 123) and images (m = 785) alike: the exact EMNIST pass
    # took 303 s threaded against about 10 s single-threaded (benchmarks/bench_purify.py speed).
    jobs = effective_n_jobs(n_jobs)
    with _single_threaded_blas():
        if method == "refit":
            scores, variance = _refit_scores(model, X, y)
            info = {"method": method, "variance": variance}
        else:
            state = FittedState.from_model(model, X, y, for_fast_scores=method in FAST_METHODS)
            scores, info = scores_from_state(state, method, random_state, exact_form, jobs)
    return (scores, info) if return_info else scores


def scores_from_state(
    state: FittedState, method: str, random_state=None, exact_form="auto", n_jobs: int = 1
):
    """delta_scores for an already evaluated fit (any method but ``"refit"``).

    The Purifier evaluates each refit once (:class:`FittedState`) for its history and scores
    the same state, so V, the Hessian factor and the solves are computed once per iteration.
    ``n_jobs`` is a resolved worker count (:func:`effective_n_jobs`). Returns (scores, info) as
    ``delta_scores(..., return_info=True)``. Callers hold the BLAS thread limit of
    :func:`delta_scores`.
    """
    info: dict = {"method": method}
    if method == "fast":
        use_fast1 = state.n >= FAST1_MIN_RATIO * state.m or state.n > FAST2_MAX_N
        method = "fast1" if use_fast1 else "fast2"
        info["method"] = method
    if method == "random":
        return check_random_state(random_state).random_sample(state.n), info
    if method == "loss":
        return state.losses(), info
    if method == "self_influence":
        return state.self_influence.copy(), info
    V = state.variance
    info["variance"] = V
    if method == "fast1":
        return _fast1(state), info
    if method == "fast2":
        return V - _fast2(state), info
    form = _choose_exact_form(state) if exact_form == "auto" else exact_form
    info["form"] = form
    loo = (_exact_primal if form == "primal" else _exact_dual)(state, n_jobs)
    return V - loo, info


# ------------------------------------------------------------------------------- refit
def _refit_scores(model, X, y):
    from .influence import influence_variance

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n = X.shape[0]
    V = influence_variance(model, X, y)
    out = np.empty(n)
    keep = np.ones(n, dtype=bool)
    for z in range(n):
        keep[z] = False
        sub = clone(model).set_params(warm_start=True)
        # warm start from the full fit: copy the fitted attributes the solver starts from
        sub.classes_, sub.coef_, sub.intercept_ = model.classes_, model.coef_, model.intercept_
        sub.n_features_in_ = model.n_features_in_
        sub.fit(X[keep], y[keep])
        out[z] = V - influence_variance(sub, X[keep], y[keep])
        keep[z] = True
    return out, V


# ----------------------------------------------------------------------- exact: shared
def _newton_steps(state: FittedState) -> np.ndarray:
    """Delta_z = H^{-1} g_z / n for every z, shape (n, m)."""
    return state.HinvGt.T / state.n


def _shifted_fits(state: FittedState, zs: np.ndarray, steps: np.ndarray):
    """Residuals and Hessian weights on all points under each candidate's shifted model.

    Returns R (c, n, B) and W (c, n, B, B) with the candidate's own row zeroed, so that sums
    over i run over Z \\ z.
    """
    B, D = state.B, state.D
    theta = state.theta[None] + np.einsum("ca,zad->zcd", state.Q, steps.reshape(-1, B, D))
    logits = np.einsum("nd,zcd->znc", state.Xa, theta)
    logits -= logits.max(axis=2, keepdims=True)
    P = np.exp(logits)
    P /= P.sum(axis=2, keepdims=True)
    Rfull = P.copy()
    Rfull[:, np.arange(state.n), state.yidx] -= 1.0
    R = Rfull @ state.Q
    QP = P @ state.Q
    W = np.einsum("znc,ca,cb->znab", P, state.Q, state.Q, optimize=True)
    W -= QP[..., :, None] * QP[..., None, :]
    rows = np.arange(zs.shape[0])
    R[rows, zs] = 0.0
    W[rows, zs] = 0.0
    return R, W


def _choose_exact_form(state: FittedState) -> str:
    n, D, B = state.n, state.D, state.B
    pairs = B * (B + 1) // 2
    primal = n * D * D * pairs * 2.0 + 3.0 * state.m**3
    dual = 3.0 * (n * B) ** 3
    primal_bytes = n * D * (D + 1) / 2 * 8
    return "primal" if primal <= dual and primal_bytes <= 2 * _CHUNK_BYTES else "dual"


def _over_candidates(
    batch_fn, n: int, per_candidate_bytes: float, n_jobs: int, workers: str
) -> np.ndarray:
    """out[zs] = batch_fn(zs) over batches of candidates, ``n_jobs`` batches at a time.

    The batches do not depend on ``n_jobs`` (batched GEMMs round differently for other batch
    shapes), so the scores are bitwise the same for any number of workers; each batch uses at
    most half the working-memory budget. ``workers="threads"`` suits the primal form (NumPy's
    batched inverses and einsums release the GIL: 2.5 s -> 1.3 s on SD-2 with 2 threads);
    ``"processes"`` the dual form, whose per-candidate SciPy Cholesky and triangular solves
    hold the GIL (threads gained 1.2x, processes 1.6x: 15.2 s -> 9.3 s on EMNIST 4/8).
    """
    size = int(max(1, min(-(-n // 8), _CHUNK_BYTES // 2 // max(per_candidate_bytes, 1))))
    batches = [np.arange(start, min(start + size, n)) for start in range(0, n, size)]
    out = np.empty(n)
    if n_jobs == 1:
        for zs in batches:
            out[zs] = batch_fn(zs)
        return out
    from joblib import Parallel, delayed

    backend = "threading" if workers == "threads" else "loky"
    jobs = Parallel(n_jobs=n_jobs, backend=backend)(
        delayed(_single_threaded)(batch_fn, zs) for zs in batches
    )
    for zs, values in zip(batches, jobs, strict=True):
        out[zs] = values
    return out


def _single_threaded(fn, arg):
    with _single_threaded_blas():
        return fn(arg)


def effective_n_jobs(n_jobs) -> int:
    """None -> 1, -1 -> all cores, -2 -> all but one, ... (joblib's convention)."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None or a non-zero integer; got {n_jobs!r}")
    cores = os.cpu_count() or 1
    return int(n_jobs) if n_jobs > 0 else max(1, cores + 1 + int(n_jobs))


# ----------------------------------------------------------------------- exact: primal
def _exact_primal(state: FittedState, n_jobs: int = 1) -> np.ndarray:
    """V_{-z} for all z via m x m systems; the D x D Gram blocks come from one GEMM per batch."""
    n, D, B, m = state.n, state.D, state.B, state.m
    iu = np.triu_indices(D)
    # xa_i (x) xa_i restricted to the upper triangle: x^T M x = sum_{k<=l} x_k x_l M'_kl
    kr = (state.Xa[:, iu[0]] * state.Xa[:, iu[1]])  # (n, T)
    T = kr.shape[1]
    pairs = [(a, b) for a in range(B) for b in range(a, B)]
    steps = _newton_steps(state)
    mu = state.mu
    n_pairs = (n - 1.0) * (n - 2.0)
    per_cand = 8.0 * (4 * m * m + 2 * T * len(pairs) + 4 * n * B * B + n * state.theta.shape[0])

    def batch(zs):
        c = zs.shape[0]
        R, W = _shifted_fits(state, zs, steps[zs])
        wS = np.stack([R[..., a] * R[..., b] for a, b in pairs], axis=-1)  # (c, n, p)
        wH = np.stack([W[..., a, b] for a, b in pairs], axis=-1)
        both = np.concatenate([wS, wH], axis=-1)  # (c, n, 2p)
        grams = kr.T @ both.transpose(1, 0, 2).reshape(n, -1)  # (T, c * 2p)
        grams = grams.reshape(T, c, 2, len(pairs))
        S = _unpack_blocks(grams[:, :, 0], iu, D, B, pairs)
        Hz = _unpack_blocks(grams[:, :, 1], iu, D, B, pairs) / (n - 1.0)
        Hz[:, np.arange(m), np.arange(m)] += mu
        Hinv = np.linalg.inv(Hz)
        Hinv = 0.5 * (Hinv + Hinv.transpose(0, 2, 1))
        A = Hinv @ S
        trace_sq = np.einsum("zij,zji->z", A, A)
        colsum = np.einsum("zna,nd->zad", R, state.Xa).reshape(c, m)
        q = np.einsum("zi,zij,zj->z", colsum, Hinv, colsum)
        # d_i = sum_{a,b} R_ia R_ib xa_i^T Hinv_ab xa_i, through the upper-triangle trick
        d = np.zeros((c, n))
        factor = np.where(iu[0] == iu[1], 1.0, 2.0)
        for a, b in pairs:
            blk = Hinv[:, a * D : (a + 1) * D, b * D : (b + 1) * D]
            sym = blk + blk.transpose(0, 2, 1) if a != b else blk
            quad = kr @ (sym[:, iu[0], iu[1]] * factor).T  # (n, c)
            d += R[..., a] * R[..., b] * quad.T
        S1 = -q + d.sum(axis=1)
        S2 = trace_sq - np.sum(d * d, axis=1)
        mean = S1 / n_pairs
        return S2 / n_pairs - mean * mean

    return _over_candidates(batch, n, per_cand, n_jobs, "threads")


def _unpack_blocks(vals: np.ndarray, iu, D: int, B: int, pairs) -> np.ndarray:
    """Build (c, B D, B D) symmetric matrices from upper-triangle Gram vectors (T, c, p)."""
    c = vals.shape[1]
    out = np.empty((c, B * D, B * D))
    blk = np.empty((c, D, D))
    for k, (a, b) in enumerate(pairs):
        v = vals[:, :, k].T  # (c, T)
        blk[:, iu[0], iu[1]] = v
        blk[:, iu[1], iu[0]] = v
        out[:, a * D : (a + 1) * D, b * D : (b + 1) * D] = blk
        if a != b:
            out[:, b * D : (b + 1) * D, a * D : (a + 1) * D] = blk.transpose(0, 2, 1)
    return out


# ------------------------------------------------------------------------- exact: dual
def _exact_dual(state: FittedState, n_jobs: int = 1) -> np.ndarray:
    """V_{-z} for all z via (n B) x (n B) systems: the cheaper form when n B < m.

    With J the (n B, m) matrix of rows e_a (x) xa_i, H_{-z} = J^T Omega J + mu I and
    Omega = blockdiag(W'_i / (n-1)) = U U^T; then
    K = -(1/mu) (R R^T o Gm - E F^{-1} E^T), Gm = Xa Xa^T, F = mu I + U^T (Gm (x) I_B) U,
    E[i, (j, b)] = Gm_ij (R_i^T U_j)_b.
    """
    from scipy import linalg

    n, B = state.n, state.B
    mu = state.mu
    if mu <= 0:
        raise ValueError("the dual exact form needs alpha + damping > 0; use exact_form='primal'")
    Gm = state.Gm
    steps = _newton_steps(state)
    n_pairs = (n - 1.0) * (n - 2.0)
    per_cand = 8.0 * n * (2 * B * B + state.theta.shape[0])

    def batch(zs):
        R, W = _shifted_fits(state, zs, steps[zs])
        U = psd_factor(W / (n - 1.0))  # (c, n, B, B)
        out = np.empty(zs.shape[0])
        for k in range(zs.shape[0]):
            Rk, Uk = R[k], U[k]
            if B == 1:
                u, r = Uk[:, 0, 0], Rk[:, 0]
                UG = u[:, None] * Gm
                F = UG * u[None, :]
                Et = UG * r[None, :]  # E^T
            else:
                F = np.einsum("ixa,ij,jxb->iajb", Uk, Gm, Uk, optimize=True)
                F = F.reshape(n * B, n * B)
                Et = np.einsum("ia,ij,jab->ijb", Rk, Gm, Uk, optimize=True).reshape(n, n * B).T
            F[np.diag_indices_from(F)] += mu
            Lf = linalg.cholesky(F, lower=True, overwrite_a=True, check_finite=False)
            Zm = linalg.solve_triangular(Lf, Et, lower=True, overwrite_b=True, check_finite=False)
            # mu K = Zm^T Zm - R R^T o Gm, built in place to keep the n x n passes few
            muK = Zm.T @ Zm
            muK -= (Rk @ Rk.T) * Gm
            diag = np.diag(muK)
            S1 = (muK.sum() - diag.sum()) / mu
            S2 = (np.vdot(muK, muK) - np.dot(diag, diag)) / mu**2
            mean = S1 / n_pairs
            out[k] = S2 / n_pairs - mean * mean
        return out

    return _over_candidates(batch, n, per_cand, n_jobs, "processes")


# -------------------------------------------------------------------------- fast paths
def _first_order_terms(state: FittedState) -> dict:
    """Pair-removal sums and the first-order model-shift pieces shared by fast1 and fast2.

    Two row-chunked passes (:mod:`divpred._rowpass`), nothing n x m held. With F_i = H^{-1} g_i,
    A2 = H^{-1} S H^{-1}, Hcol = H^{-1} G^T 1 and Phi G = (2/N)(-G H^{-1} S + d' G
    - (S1/N)(1 col^T - G)) (K G = -G H^{-1} S), the rows u_i of U = Phi G H^{-1} are
    u_i = (2/N)(-A2 g_i + (d'_i + S1/N) F_i - (S1/N) Hcol), so t_i = U_i xa_i needs only the
    per-point tA_i, tH_i and xa_i . Hcol_a; and M = H^{-1} G^T Phi G H^{-1} with
    G^T Phi G = (2/N)(-S H^{-1} S + sum_i d'_i g_i g_i^T - (S1/N)(col col^T - S)), i.e.
    M = (2/N)(-A2 S H^{-1} + Fd^T Fd - (S1/N)(Hcol Hcol^T - A2)) with the rows
    sqrt(d'_i) F_i of Fd: so formed when n < 2 m (``FittedState.few_rows``: one GEMM and one
    SYRK of n rows instead of three m x m products), else from G^T Phi G.
    """
    n, B, D = state.n, state.B, state.D
    rows = state.row_stats
    dprime, Hinv, S = rows.dprime, state.Hinv, rows.S
    col = state.col
    S1, S2 = state.pair_sums
    N = n * (n - 1.0)
    HinvS = state.HinvS
    A2 = HinvS @ Hinv
    A2 = 0.5 * (A2 + A2.T)
    if state.few_rows:
        Fd = state.G @ Hinv
        Fd *= np.sqrt(np.clip(dprime, 0.0, None))[:, None]
        hcol = Hinv @ col
        M = (2.0 / N) * (-(A2 @ HinvS.T) + Fd.T @ Fd - (S1 / N) * (np.outer(hcol, hcol) - A2))
    else:
        dgram = rows.dgram if rows.dgram is not None else dprime_gram(state, dprime)
        GtPhiG = (2.0 / N) * (-(S @ HinvS) + dgram - (S1 / N) * (np.outer(col, col) - S))
        M = Hinv @ GtPhiG @ Hinv
    M = 0.5 * (M + M.T)
    more = score_row_stats(state, A2, M)

    x_hcol = state.Xa @ (Hinv @ col).reshape(B, D).T  # xa_i . (Hcol)_a, (n, B)
    t = (2.0 / N) * (-more.tA + (dprime + S1 / N)[:, None] * rows.tH - (S1 / N) * x_hcol)
    hu = np.einsum("nab,nb->na", state.W, t)  # h_i u_i = hu_i (x) xa_i
    c = ((-2.0 * hu + more.coef_h / n).T @ state.Xa).ravel()  # c = c_grad + c_hess
    x_hc = state.Xa @ (Hinv @ c).reshape(B, D).T
    return {
        "S1": S1, "S2": S2, "r": -np.sum(state.R * x_hcol, axis=1), "s": more.s,
        "dprime": dprime, "qw": more.qw, "t": t, "coef_h": more.coef_h,
        "shift": np.sum(state.R * x_hc, axis=1) / n,  # c^T Delta_z = g_z^T H^{-1} c / n
        "s_vec": rows.tH / n,  # Delta_z xa_z
    }


# Binary models with fewer points than parameters (images): every fast quantity is a function of
# the n x n matrix Mx = Xa H^{-1} Xa^T, which the push-through identity gives from the n x n Gram
# matrix Gm = Xa Xa^T without any m x m work:
#   Xa (Xa^T Omega Xa + mu I)^{-1} Xa^T = (Gm - Gm U (mu I + U Gm U)^{-1} U Gm) / mu,  U^2 = Omega.
def _first_order_terms_dual(state: FittedState) -> dict:
    """The keys of :func:`_first_order_terms` for B = 1, n < m, in O(n^3 + n^2 D).

    With A1 = Mx R (R = diag(r), A1_ij = xa_i^T H^{-1} g_j), K = -R Mx R and Phi = (2/N)(K
    - (S1/N) 1 1^T + E), E = diag(r_k^2 Mx_kk + S1/N) (Phi's diagonal zeroed):
    K_ij A1_ij = -r_i A1_ij^2, so t_i = (Phi A1^T)_ii = (2/N)(-r_i sum_k A1_ik^2
    - (S1/N) (Mx r)_i + E_ii A1_ii), and xa_i^T M xa_i = (A1 Phi A1^T)_ii
    = (2/N)(-(P R^2 Mx)_ii - (S1/N) (Mx r)_i^2 + sum_k A1_ik^2 E_kk) with P = A1 A1^T
    (one symmetric product, no n x n Phi).
    """
    n = state.n
    r = state.R[:, 0]
    w = state.W[:, 0, 0]
    Mx = state.Mx_dual
    S1, S2 = state.pair_sums
    N = n * (n - 1.0)
    s1n = S1 / N
    A1 = state.A1_dual  # xa_i^T H^{-1} g_j
    A1sq = A1 * A1
    a1sq_rows = A1sq.sum(axis=1)
    Mr = A1.sum(axis=1)  # (Mx r)_i
    dMx = np.diag(Mx).copy()
    e = r * r * dMx + s1n
    t = (2.0 / N) * (-r * a1sq_rows - s1n * Mr + e * r * dMx)  # u_i . xa_i, U = Phi G H^{-1}
    P = A1 @ A1.T  # Mx R^2 Mx
    P *= A1
    Qd = (2.0 / N) * (-(P @ r) - s1n * Mr * Mr + A1sq @ e)  # xa_i^T M xa_i
    Qd = Qd[:, None, None]
    coef_h = hessian_shift_coefficients(state.P, state.Q, Qd)
    cc = -2.0 * w * t + coef_h[:, 0] / n  # c = Xa^T cc
    return {
        "S1": S1, "S2": S2, "r": -r * Mr, "s": r * r * a1sq_rows, "dprime": r * r * dMx,
        "qw": Qd[:, 0, 0] * w, "t": t[:, None], "coef_h": coef_h,
        "shift": r * (Mx @ cc) / n, "s_vec": (r * dMx / n)[:, None],
    }


def _fast1(state: FittedState) -> np.ndarray:
    """delta(z) itself (not V_{-z}): the pair-removal part is formed without cancellation."""
    n = state.n
    f = _first_order_terms_dual(state) if state.binary_dual else _first_order_terms(state)
    renorm = (f["qw"].mean() - f["qw"]) / (n - 1.0)
    b = f["r"] + f["dprime"]
    a = f["s"] - f["dprime"] ** 2
    return pair_removal_delta(f["S1"], f["S2"], n, b, a, f["shift"], renorm)


def _fast2(state: FittedState) -> np.ndarray:
    """V_{-z} of the semi-exact scores (:mod:`divpred._fast2`)."""
    f = _first_order_terms_dual(state) if state.binary_dual else _first_order_terms(state)
    return fast2_fixed_and_shift(state, f)
