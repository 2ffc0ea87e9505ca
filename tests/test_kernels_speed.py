"""The optimised kernels of issue 13 against independent exact computations: the pair-product
Hessian against an explicit sum of per-point Kronecker products, the Newton fit with it against
the fit without it, and fast2's batched Woodbury sums against one explicit n x n matrix per
candidate."""

import numpy as np
import pytest

from divpred import MultinomialLogit
from divpred._state import FittedState
from divpred.models import _softmax as sm

from .conftest import make_classification


def explicit_hessian(Xa, theta, Q, w):
    """sum_i w_i (Q^T W_i Q) (x) xa_i xa_i^T, one point at a time with np.kron."""
    P = sm.probabilities(Xa, theta)
    out = 0.0
    for i in range(Xa.shape[0]):
        Wi = Q.T @ (np.diag(P[i]) - np.outer(P[i], P[i])) @ Q
        out = out + w[i] * np.kron(Wi, np.outer(Xa[i], Xa[i]))
    return out


@pytest.mark.parametrize("C,d", [(6, 4), (7, 9)])
def test_pair_product_hessian_equals_explicit_sum(C, d):
    X, y = make_classification(80, d, C, seed=C + d)
    Xa = sm.augment(X)
    Q = sm.contrast_basis(C)
    theta = np.random.default_rng(0).normal(size=(C, d + 1))
    w = np.random.default_rng(1).uniform(0.2, 2.0, size=80)
    pairs = sm.pair_products(Xa, Q.shape[1] * C // 2)
    assert pairs is not None  # C >= 5: enough blocks to use them
    got = sm.data_hessian(Xa, theta, Q, weights=w, pairs=pairs)
    blocks = sm.data_hessian(Xa, theta, Q, weights=w)
    expected = explicit_hessian(Xa, theta, Q, w)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(blocks, expected, rtol=0, atol=1e-13 * scale)
    np.testing.assert_array_equal(got, got.T)


def test_pair_products_only_where_they_pay():
    Xa = sm.augment(np.ones((50, 4)))
    assert sm.pair_products(Xa, 6) is None  # C = 4: few blocks, the per-block GEMMs win
    assert sm.pair_products(Xa, 10).shape == (50, 15)
    big = np.ones((sm._PAIR_BYTES // (8 * 15) + 1, 5))
    assert sm.pair_products(big, 10) is None  # over the memory budget


def test_pair_products_equal_explicit_products():
    Xa = np.random.default_rng(3).normal(size=(37, 6))
    iu, ju = np.triu_indices(6)
    np.testing.assert_array_equal(sm.pair_products(Xa, 10), Xa[:, iu] * Xa[:, ju])


@pytest.mark.parametrize("weighted", [False, True])
def test_newton_fit_with_pair_products_equals_fit_without(weighted, monkeypatch):
    X, y = make_classification(300, 8, 6, seed=4)
    w = np.random.default_rng(2).uniform(0.5, 1.5, size=300) if weighted else None
    with_pairs = MultinomialLogit(alpha=1e-3).fit(X, y, sample_weight=w)
    monkeypatch.setattr(sm, "_PAIR_MIN_BLOCKS", 10**9)
    without = MultinomialLogit(alpha=1e-3).fit(X, y, sample_weight=w)
    assert with_pairs.n_iter_ == without.n_iter_
    np.testing.assert_allclose(with_pairs.theta_, without.theta_, rtol=0,
                               atol=1e-12 * np.abs(without.theta_).max())


def explicit_removal_sums(Kt, V_all, Gamma):
    """For each z: K^(z) = K~ - V_z Gamma_z V_z^T as an explicit n x n matrix, over the pairs
    i != j with i, j != z; returns sum K^(z)_ij - sum K~_ij and the same for the squares."""
    n = Kt.shape[0]
    s1 = np.empty(n)
    s2 = np.empty(n)
    for z in range(n):
        keep = np.arange(n) != z
        Vz = V_all[z][keep]
        Kz = Kt[np.ix_(keep, keep)] - Vz @ Gamma[z] @ Vz.T
        base = Kt[np.ix_(keep, keep)]
        off = ~np.eye(n - 1, dtype=bool)
        s1[z] = Kz[off].sum() - base[off].sum()
        s2[z] = (Kz[off] ** 2).sum() - (base[off] ** 2).sum()
    return s1, s2


@pytest.mark.parametrize("n,d,C,outlier", [(40, 3, 4, False), (40, 3, 4, True),
                                           (40, 3, 6, False), (30, 6, 3, False),
                                           (25, 4, 2, False), (30, 20, 3, True)])
def test_fast2_primal_fixed_part_equals_explicit_matrices(n, d, C, outlier, monkeypatch):
    """fast2's V_{-z} at fixed parameters (the rows t_{z,i} only in e, everything else B x B
    quadratic forms with z taken out by rank-one corrections) against, for every z, the
    explicit m x m Hessian sum_{i != z} W'_i (x) xa_i xa_i^T / (n - 1) + mu I and the n x n
    matrix K^(z) of the kept rows; with and without the design's pair products (the latter
    with several GEMM blocks and sub-blocks of candidates), with a high-leverage point (the
    rank-one corrections cancel most of A_z) and with n < m."""
    from divpred import _fast2_primal
    from divpred._fast2_primal import primal_fixed_part

    X, y = make_classification(n, d, C, seed=n + d)
    if outlier:
        X[3] *= 25.0
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    got = {}
    for with_pairs in (False, True):
        with monkeypatch.context() as patch:
            patch.setattr(sm, "_PAIR_MIN_BLOCKS", 0 if with_pairs else 10**9)
            if with_pairs:
                patch.setattr(_fast2_primal, "_GEMM_CANDIDATES", 16)
                patch.setattr(_fast2_primal, "_FORM_CANDIDATES", 5)
            st = FittedState.from_model(model, X, y, for_fast_scores=True)
            assert not st.binary_dual
            got[with_pairs] = primal_fixed_part(st)
            assert (st.pair_products is not None) == with_pairs
    G = st.G
    h = [np.kron(st.W[i], np.outer(st.Xa[i], st.Xa[i])) for i in range(n)]
    total = np.sum(h, axis=0)
    expected = np.empty(n)
    for z in range(n):
        keep = np.arange(n) != z
        H = (total - h[z]) / (n - 1.0) + st.mu * np.eye(st.m)
        Kz = -G[keep] @ np.linalg.solve(H, G[keep].T)
        expected[z] = Kz[~np.eye(n - 1, dtype=bool)].var()
    for value in got.values():
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("n,d,C", [(200, 3, 4), (90, 5, 2), (300, 4, 6)])
def test_two_pass_variance_equals_explicit_influence_matrix(n, d, C, monkeypatch):
    """V of the MultinomialLogit two-pass path (influence._multinomial_summary) against the
    explicit n x n matrix K = -G H^{-1} G^T, for several block sizes, and against the generic
    path (hessian factor + whitened gradients)."""
    from divpred import influence as inf

    X, y = make_classification(n, d, C, seed=n + C)
    model = MultinomialLogit(alpha=1e-3, damping=0.01).fit(X, y)
    G = model.per_point_gradients(X, y)
    K = -G @ np.linalg.solve(model.hessian(X), G.T)
    off = K[~np.eye(n, dtype=bool)]
    expected = off.var()
    for chunk in (1, 7, 64, n):
        got = inf.influence_variance(model, X, y, chunk_size=chunk)
        assert got == pytest.approx(expected, rel=1e-12, abs=0)
    monkeypatch.setattr(inf, "model_params", lambda model: 10**18)  # the generic path
    assert inf.influence_variance(model, X, y) == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize("with_pairs", [False, True])
def test_block_quadratic_forms_many_equal_explicit_forms(with_pairs):
    rng = np.random.default_rng(5)
    B, D, n = 3, 6, 1100  # more rows than one block of sm._FORMS_ROWS, not a multiple of it
    Xa = rng.normal(size=(n, D))
    Ms = []
    for _ in range(2):
        A = rng.normal(size=(B * D, B * D))
        Ms.append(A + A.T)
    got = sm.block_quadratic_forms_many(Xa, Ms, B,
                                        pairs=sm.pair_products(Xa, 10) if with_pairs else None)
    for M, q in zip(Ms, got, strict=True):
        for a in range(B):
            for b in range(B):
                blk = M[a * D : (a + 1) * D, b * D : (b + 1) * D]
                expected = np.einsum("nd,de,ne->n", Xa, blk, Xa)
                np.testing.assert_allclose(q[:, a, b], expected, rtol=0,
                                           atol=1e-12 * np.abs(expected).max())
    R = rng.normal(size=(n, B))
    G = sm.kron_rows(R, Xa)
    expected = sm.block_rows_dot(G @ Ms[0], Xa)  # xa_i . (M g_i)_a from the m-wide product
    np.testing.assert_allclose(sm.contract_forms(got[0], R), expected, rtol=0,
                               atol=1e-12 * np.abs(expected).max())



def explicit_first_order(G, Hinv):
    """K = -G H^{-1} G^T, its pair sums S1, S2, U = Phi G H^{-1} and M = H^{-1} G^T Phi G H^{-1}
    with Phi = (2/N)(K - S1/N) off the diagonal (scores' docstring), as explicit matrices."""
    n = G.shape[0]
    K = -G @ Hinv @ G.T
    N = n * (n - 1.0)
    off = ~np.eye(n, dtype=bool)
    S1, S2 = K[off].sum(), (K[off] ** 2).sum()
    Phi = (2.0 / N) * (K - S1 / N)
    np.fill_diagonal(Phi, 0.0)
    return K, S1, S2, Phi @ G @ Hinv, Hinv @ G.T @ Phi @ G @ Hinv


def _binary_dual_state(n=24, d=40, seed=11, outlier=False):
    X, y = make_classification(n, d, 2, seed=seed)
    if outlier:  # a high-leverage point: its Woodbury correction dominates its own sums
        X[3] *= 25.0
    model = MultinomialLogit(alpha=1e-2, damping=0.01).fit(X, y)
    st = FittedState.from_model(model, X, y, for_fast_scores=True)
    assert st.binary_dual
    return model, X, y, st


def test_dual_gram_equals_explicit_solve():
    from divpred._state import dual_gram

    _, _, _, st = _binary_dual_state()
    omega = st.W[:, 0, 0] / st.n
    got = dual_gram(st.Gm, omega, st.mu)
    H = st.Xa.T @ (omega[:, None] * st.Xa) + st.mu * np.eye(st.D)  # explicit D x D
    expected = st.Xa @ np.linalg.solve(H, st.Xa.T)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_array_equal(got, got.T)  # SYRK: exactly symmetric


def test_dual_first_order_terms_equal_explicit_matrices():
    """Every term of scores._first_order_terms_dual (B = 1, n < m) against the definitions in
    scores' docstring evaluated with explicit n x n and m x m matrices."""
    from divpred.scores import _first_order_terms_dual

    _, _, _, st = _binary_dual_state()
    n, Xa, r, w = st.n, st.Xa, st.R[:, 0], st.W[:, 0, 0]
    G = r[:, None] * Xa
    H = Xa.T @ ((w / n)[:, None] * Xa) + st.mu * np.eye(st.D)
    Hinv = np.linalg.inv(H)
    K, S1, S2, U, M = explicit_first_order(G, Hinv)
    expected = {
        "S1": S1, "S2": S2, "r": K.sum(axis=1), "s": (K * K).sum(axis=1),
        "dprime": -np.diag(K), "t": np.sum(U * Xa, axis=1)[:, None],
        "qw": np.einsum("nd,de,ne->n", Xa, M, Xa) * w,
        "s_vec": (np.einsum("nd,de,ne->n", Xa, Hinv, Xa) * r / n)[:, None],
    }
    got = _first_order_terms_dual(st)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=0,
                                   atol=1e-12 * np.abs(value).max(), err_msg=key)


@pytest.mark.parametrize("n,d,seed,outlier", [(24, 40, 11, False), (24, 40, 11, True),
                                              (35, 60, 4, False), (35, 60, 4, True)])
def test_binary_dual_fast2_fixed_part_equals_explicit_matrices(n, d, seed, outlier):
    """fast2's V_{-z} at fixed parameters on the binary dual path (_fast2_dual: KT as
    -(T T^T) R, the removal sums from row reductions with K~_zi = -r_z T_zi) against one
    explicit n x n influence matrix per candidate, also with a high-leverage point."""
    from divpred import scores as scores_module
    from divpred._fast2 import fast2_fixed_and_shift

    model, X, y, st = _binary_dual_state(n, d, seed, outlier)
    f = scores_module._first_order_terms_dual(st)
    for key in ("shift", "s_vec"):  # no model shift: the fixed-parameter part alone
        f[key] = np.zeros_like(f[key])
    got = fast2_fixed_and_shift(st, f)
    G = st.R[:, 0][:, None] * st.Xa
    w = st.W[:, 0, 0]
    expected = np.empty(n)
    for z in range(n):
        keep = np.arange(n) != z
        H = st.Xa[keep].T @ ((w[keep] / (n - 1.0))[:, None] * st.Xa[keep])
        H += st.mu * np.eye(st.D)
        Kz = -G[keep] @ np.linalg.solve(H, G[keep].T)
        expected[z] = Kz[~np.eye(n - 1, dtype=bool)].var()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_principal_submatrix_equals_fancy_index():
    from divpred._refit import principal_submatrix

    rng = np.random.default_rng(3)
    A = rng.normal(size=(40, 40))
    keep = rng.random(40) < 0.7
    np.testing.assert_array_equal(principal_submatrix(A, keep), A[np.ix_(keep, keep)])


@pytest.mark.parametrize("C", [2, 4, 10])
def test_hessian_shift_coefficients_equal_per_point_matrices(C):
    """hessian_shift_coefficients (no C x C matrix per point) against, point by point,
    Q^T W_i v_i with Z_i = Q Qd_i Q^T, v_i = diag(Z_i) - 2 Z_i p_i, W_i = diag p_i - p_i p_i^T."""
    rng = np.random.default_rng(C)
    n, B = 40, C - 1
    Q = sm.contrast_basis(C)
    P = rng.dirichlet(np.ones(C), size=n)
    Qd = rng.normal(size=(n, B, B))
    Qd = Qd + Qd.transpose(0, 2, 1)
    coef = sm.hessian_shift_coefficients(P, Q, Qd)
    for i in range(n):
        Z = Q @ Qd[i] @ Q.T
        v = np.diag(Z) - 2.0 * Z @ P[i]
        expected = Q.T @ (np.diag(P[i]) - np.outer(P[i], P[i])) @ v
        np.testing.assert_allclose(coef[i], expected, rtol=0,
                                   atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("few_rows", [False, True])
@pytest.mark.parametrize("n,d,C", [(30, 20, 3), (150, 3, 4)])
def test_first_order_terms_equal_explicit_matrices(n, d, C, few_rows, monkeypatch):
    """Every term of scores._first_order_terms (the primal form) against the definitions in
    scores' docstring with explicit n x n and m x m matrices, with M = H^{-1} G^T Phi G H^{-1}
    formed from G^T Phi G and from the rows sqrt(d'_i) H^{-1} g_i (``few_rows``), and the
    record's pass building sum_i d'_i g_i g_i^T only where the former needs it."""
    from divpred.scores import _first_order_terms

    monkeypatch.setattr(FittedState, "few_rows", property(lambda self: few_rows))
    X, y = make_classification(n, d, C, seed=n + C)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    st = FittedState.from_model(model, X, y, for_fast_scores=True)
    assert (st.row_stats.dgram is None) == few_rows
    Xa, G, W = st.Xa, st.G, st.W
    h = [np.kron(W[i], np.outer(Xa[i], Xa[i])) for i in range(n)]
    H = np.sum(h, axis=0) / n + st.mu * np.eye(st.m)
    Hinv = np.linalg.inv(H)
    K, S1, S2, U, M = explicit_first_order(G, Hinv)
    B, D = st.B, st.D
    Qd = np.stack([[[Xa[i] @ M[a * D:(a + 1) * D, b * D:(b + 1) * D] @ Xa[i]
                     for b in range(B)] for a in range(B)] for i in range(n)])
    coef_h = sm.hessian_shift_coefficients(st.P, st.Q, Qd)
    c = sum(-2.0 * h[i] @ U[i] + np.kron(coef_h[i], Xa[i]) / n for i in range(n))
    expected = {
        "S1": S1, "S2": S2, "r": K.sum(axis=1), "s": (K * K).sum(axis=1),
        "dprime": -np.diag(K), "t": sm.block_rows_dot(U, Xa),
        "qw": np.einsum("nab,nab->n", Qd, W), "coef_h": coef_h,
        "shift": G @ Hinv @ c / n, "s_vec": sm.block_rows_dot(G @ Hinv / n, Xa),
    }
    got = _first_order_terms(st)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=0,
                                   atol=1e-12 * np.abs(value).max(), err_msg=key)
