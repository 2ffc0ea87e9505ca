"""V[X], its moments, self-influence and the fast1 scores as sums over row blocks (the passes
of :mod:`divpred.backends.dask_backend`)."""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
from scipy import linalg

from ..._state import FittedState, pair_removal_delta, variance_from_sums
from ..._validation import MIN_POINTS
from ...influence import InfluenceSummary
from ...models import _softmax as sm
from .alignment import aligned
from .engine import (
    SPLIT_EVERY,
    _block_state,
    _compute,
    _Data,
    _map,
    _prepare,
    _reduce,
    _reduce_with_rows,
)

FAST_METHODS = ("fast1", "self_influence")


def _n_pairs(B: int) -> int:
    return B * (B + 1) // 2


def _gradient_sums(st: FittedState) -> list[np.ndarray]:
    """[count, loss sum], col = sum g_i of one block's state: what every fit pass sums."""
    return [np.array([st.n, st.losses().sum()]), (st.R.T @ st.Xa).ravel()]


def _gradient_block(Xb, yb, rb, c):
    """[count, loss sum, col] of one block: a chord step's pass (no Gram)."""
    return np.concatenate(_gradient_sums(_block_state(Xb, yb, rb, c)))


def _stats_block(Xb, yb, rb, c):
    """[count, loss sum, col = sum g_i, H gram blocks, (S gram blocks)] of one block."""
    st = _block_state(Xb, yb, rb, c)
    B = st.B
    out = _gradient_sums(st)
    out.append(sm._gram_upper(st.Xa, sm._upper_hessian_weights(st.P, st.Q)).ravel())
    if c["with_S"]:
        ia, ib = np.triu_indices(B)
        out.append(sm._gram_upper(st.Xa, st.R[:, ia] * st.R[:, ib]).ravel())
    return np.concatenate(out)


def _forms(st: FittedState, c, names) -> list[np.ndarray]:
    """The (n, B, B) quadratic forms xa_i^T A_ab xa_i of the symmetric (m, m) matrices
    ``c[name]`` for ``name`` in ``names``, in one GEMM (as the numpy path's
    :mod:`divpred._rowpass` per chunk)."""
    return sm.block_quadratic_forms_many(st.Xa, [c[name] for name in names], st.B)


def _gradient_form(st: FittedState, q: np.ndarray) -> np.ndarray:
    """g_i^T A g_i for every row from the quadratic forms ``q`` (n, B, B) of A (:func:`_forms`),
    g_i = R_i (x) xa_i: R_i . (xa_i . (A g_i)_a)."""
    return np.einsum("na,na->n", st.R, sm.contract_forms(q, st.R))


def _row_dot(st: FittedState, v: np.ndarray) -> np.ndarray:
    """g_i . v for every row, g_i = R_i (x) xa_i and v of length m: R_i . (V xa_i), V = v as
    (B, D)."""
    return np.einsum("na,na->n", st.R, st.Xa @ v.reshape(st.B, st.D).T)


def _pass2_block(Xb, yb, rb, c):
    """[sum d', sum d'^2, sum d'_i g_i g_i^T (gram blocks)] of one block (V's second pass)."""
    return _pass2_terms(_block_state(Xb, yb, rb, c), c)[0]


def _pass2_rows_block(Xb, yb, rb, c):
    """:func:`_pass2_terms` with ``c["with_c"]``: the sums (as :func:`_pass2_block`, then CG1,
    CG2) and, per kept row, [g_i^T H^{-1} g_i, g_i^T H^{-1} S H^{-1} g_i] (n, 2), the two
    terms of the fast1 scores that need the quadratic forms of this pass."""
    st = _block_state(Xb, yb, rb, c)
    vec, dprime, tHSH = _pass2_terms(st, c)
    return vec, np.stack([dprime, np.einsum("na,na->n", st.R, tHSH)], axis=1)


def _pass2_terms(st: FittedState, c):
    """(the sums of :func:`_pass2_block` [, CG1, CG2 with ``c["with_c"]``], d' (n,),
    xa_i . (A^T F_i)_a (n, B) or None).

    With F_i = H^{-1} g_i: d'_i = g_i . F_i, and the class blocks of U1_i = -A^T F_i + d'_i F_i
    (A = S H^{-1}) and U2_i = F_i - H^{-1} col enter only as xa_i . (U_i)_a, which are
    contractions of the quadratic forms of H^{-1} and H^{-1} S H^{-1} with R_i
    (:func:`divpred.models._softmax.contract_forms`): no n x m array is formed.
    """
    B = st.B
    forms = _forms(st, c, ["Hinv", "HSH"] if c["with_c"] else ["Hinv"])
    tH = sm.contract_forms(forms[0], st.R)  # xa_i . (F_i)_a
    dprime = np.einsum("na,na->n", st.R, tH)
    ia, ib = np.triu_indices(B)
    A2 = sm._gram_upper(st.Xa, dprime[:, None] * (st.R[:, ia] * st.R[:, ib]))
    out = [np.array([dprime.sum(), np.sum(dprime * dprime)]), A2.ravel()]
    tHSH = None
    if c["with_c"]:
        tHSH = sm.contract_forms(forms[1], st.R)  # xa_i . (A^T F_i)_a
        t1 = dprime[:, None] * tH - tHSH
        t2 = tH - st.Xa @ c["Hcol"].reshape(B, st.D).T
        for t in (t1, t2):
            # h_i u_i = (W_i (xa_i . (u_i)_a)_a) (x) xa_i
            hu = np.einsum("nab,nb->na", st.W, t)
            out.append((hu.T @ st.Xa).ravel())
    return np.concatenate(out), dprime, tHSH


def _pass3_block(Xb, yb, rb, c):
    """sum_i (Q^T W_i v_i) (x) xa_i of one block (the Hessian part of c, times n), and
    <M, h_i> per kept row (n, 1): the fast1 scores' term from the quadratic forms of M."""
    st = _block_state(Xb, yb, rb, c)
    Qd = _forms(st, c, ["M"])[0]
    coef = sm.hessian_shift_coefficients(st.P, st.Q, Qd)
    return (coef.T @ st.Xa).ravel(), np.einsum("nab,nab->n", Qd, st.W)[:, None]


def _self_influence_block(Xb, yb, rb, c):
    st = _block_state(Xb, yb, rb, c)
    return _gradient_form(st, _forms(st, c, ["Hinv"])[0])


def _fast1_block(Xb, yb, rb, c, forms2, forms3):
    """fast1 delta(z) = V - V_{-z} for the kept rows of one block.

    Every term is g_z . v for an m-vector v, g_z^T A g_z for A = H^{-1}, H^{-1} S H^{-1} or
    <M, h_z>: the last three come from the passes that formed their quadratic forms,
    ``forms2`` = [g^T H^{-1} g, g^T H^{-1} S H^{-1} g] (:func:`_pass2_rows_block`) and
    ``forms3`` = [<M, h_z>] (:func:`_pass3_block`), (kept rows, 2) and (kept rows, 1), so
    this pass computes only the probabilities and two products with the block.
    """
    st = _block_state(Xb, yb, rb, c)
    n = c["n"]
    dprime, s = forms2[:, 0], forms2[:, 1]  # s = sum_j K_zj^2
    qw = forms3[:, 0]
    r = -_row_dot(st, c["Hcol"])  # sum_j K_zj
    shift = _row_dot(st, c["Hc"]) / n
    renorm = (c["qw_mean"] - qw) / (n - 1.0)
    return pair_removal_delta(c["S1"], c["S2"], n, r + dprime, s - dprime**2, shift, renorm)


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
    HSH: np.ndarray  # H^{-1} S H^{-1}, symmetrised
    theta: np.ndarray


def _pass1(data: _Data, model, client=None, sums: dict | None = None) -> _Pass1:
    """The first pass's sums at ``model.theta_``; taken from ``sums`` (the fit's last pass, see
    :func:`.fit.fit_multinomial`) without a pass when they hold S at exactly that theta."""
    theta = _theta_of(model)
    if sums and sums["S"] is not None and np.array_equal(sums["theta"], theta):
        n, loss, col, H_sum, S = (sums[key] for key in ("n", "loss", "col", "H_sum", "S"))
    else:
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
    HSH = Hinv @ At
    HSH = 0.5 * (HSH + HSH.T)
    return _Pass1(n, loss, col, H_data, S, Hinv, Hcol, At, HSH, theta)


def _pass2(data: _Data, p1: _Pass1, *, with_c: bool, client=None):
    C, D = p1.theta.shape
    B = C - 1
    m = B * D
    K = _n_pairs(B)
    length = 2 + K * D * D + (2 * m if with_c else 0)
    consts = {"theta": p1.theta, "Hinv": p1.Hinv, "with_c": with_c}
    if with_c:
        consts.update(HSH=p1.HSH, Hcol=p1.Hcol)
        vec, forms2 = _reduce_with_rows(data, _pass2_rows_block, length, 2, consts, client)
    else:
        vec = _reduce(data, _pass2_block, length, consts, client)
    sum_d, sum_d2 = vec[0], vec[1]
    A2 = sm._assemble_blocks(vec[2 : 2 + K * D * D].reshape(D, K * D), B)
    S1 = -float(p1.col @ p1.Hcol) + float(sum_d)
    S2 = float(np.sum(p1.At * p1.At.T)) - float(sum_d2)  # tr((H^-1 S)^2)
    out = {"S1": S1, "S2": S2, "A2": A2}
    if with_c:
        off = 2 + K * D * D
        out["CG1"], out["CG2"] = vec[off : off + m], vec[off + m : off + 2 * m]
        out["forms2"] = forms2
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


def _summary(data: _Data, model, client=None, sums: dict | None = None) -> InfluenceSummary:
    p1 = _pass1(data, model, client, sums)
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
    consts = aligned(consts)  # Linv_T and theta enter ``@`` (.alignment)
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


def _delta(data: _Data, model, method: str, client=None, sums: dict | None = None):
    p1 = _pass1(data, model, client, sums)
    if method == "self_influence":
        scores = _map(data, _self_influence_block, {"theta": p1.theta, "Hinv": p1.Hinv})
        return scores, {"method": method, "n": p1.n, "H_data": p1.H_data}
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
    c_hess, forms3 = _reduce_with_rows(data, _pass3_block, (C - 1) * D, 1,
                                       {"theta": p1.theta, "M": M}, client)
    c_hess = c_hess / n
    consts = {
        "theta": p1.theta, "Hcol": p1.Hcol,
        "Hc": p1.Hinv @ (c_grad + c_hess), "n": float(n), "S1": S1, "S2": S2,
        "qw_mean": float(np.sum(M * p1.H_data)),
    }
    info = {"method": method, "variance": V, "n": n, "pair_sum": S1, "pair_sum_sq": S2,
            "train_loss": p1.loss_sum / n, "H_data": p1.H_data}
    return _map(data, _fast1_block, consts, (p2["forms2"], forms3)), info
