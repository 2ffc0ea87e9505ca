"""The row-chunked fast scores: the numbers of the in-memory formulas, any chunk size, and no
n x m array held."""

import tracemalloc

import numpy as np
import pytest

from divpred import MultinomialLogit, delta_scores
from divpred._state import FittedState, pair_removal_delta
from divpred.scores import _fast1, _fast2

from .conftest import make_classification


def in_memory_fast1(model, X, y):
    """fast1 from whole n x m and n x n arrays, straight from the formulas of ``scores``."""
    st = FittedState.from_model(model, X, y)
    n, B, D = st.n, st.B, st.D
    G = model.per_point_gradients(X, y)
    H = model.hessian(X)
    Hinv = np.linalg.inv(H)
    K = -G @ Hinv @ G.T
    dprime = -np.diag(K)
    S1 = K.sum() - np.trace(K)
    S2 = np.sum(K * K) - np.sum(np.diag(K) ** 2)
    N = n * (n - 1.0)
    Phi = (2.0 / N) * (K - S1 / N)
    np.fill_diagonal(Phi, 0.0)
    U = Phi @ G @ Hinv
    M = Hinv @ G.T @ Phi @ G @ Hinv
    Qd = np.empty((n, B, B))
    for a in range(B):
        for b in range(B):
            blk = M[a * D : (a + 1) * D, b * D : (b + 1) * D]
            Qd[:, a, b] = np.einsum("nd,de,ne->n", st.Xa, blk, st.Xa)
    t = np.einsum("nbd,nd->nb", U.reshape(n, B, D), st.Xa)
    hu = np.einsum("nab,nb->na", st.W, t)
    Z = np.einsum("ca,nab,eb->nce", st.Q, Qd, st.Q)
    v = np.einsum("ncc->nc", Z) - 2.0 * np.einsum("nce,ne->nc", Z, st.P)
    coef_h = (st.P * v - st.P * np.sum(st.P * v, axis=1, keepdims=True)) @ st.Q
    c = ((-2.0 * hu + coef_h / n).T @ st.Xa).ravel()
    shift = G @ Hinv @ c / n
    qw = np.einsum("nab,nab->n", Qd, st.W)
    renorm = (qw.mean() - qw) / (n - 1.0)
    b = K.sum(axis=1) - np.diag(K)
    a = np.sum(K * K, axis=1) - np.diag(K) ** 2
    return pair_removal_delta(S1, S2, n, b, a, shift, renorm), dprime


@pytest.mark.parametrize("n,d,C", [(120, 4, 3), (200, 6, 4), (90, 5, 2), (60, 9, 3)])
def test_chunked_fast1_equals_in_memory_formulas(n, d, C):
    X, y = make_classification(n, d, C, seed=n + d)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    expected, dprime = in_memory_fast1(model, X, y)
    got = delta_scores(model, X, y, "fast1")
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(delta_scores(model, X, y, "self_influence"), dprime, rtol=1e-12)


@pytest.mark.parametrize("rows", [16, 1024])
def test_gradient_row_stats_equal_explicit_sums(rows, monkeypatch):
    """The first row pass (blocks of ``rows``, SYRKs into upper triangles, H^{-1}'s stacked
    blocks) against S = G^T G, d'_i = g_i^T H^{-1} g_i, xa_i . (H^{-1} g_i)_a and
    sum_i d'_i g_i g_i^T from whole n x m arrays."""
    import divpred._rowpass as rp

    monkeypatch.setattr(rp, "_SYRK_ROWS", rows)
    X, y = make_classification(150, 5, 4, seed=8)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    st = FittedState.from_model(model, X, y)
    got = rp.gradient_row_stats(st, with_dgram=True)
    G = model.per_point_gradients(X, y)
    F = G @ np.linalg.inv(model.hessian(X))
    d = np.einsum("ij,ij->i", G, F)
    expected = {"S": G.T @ G, "dprime": d, "dgram": (G * d[:, None]).T @ G,
                "tH": np.einsum("nbd,nd->nb", F.reshape(150, st.B, st.D), st.Xa)}
    for name, want in expected.items():
        value = getattr(got, name)
        np.testing.assert_allclose(value, want, rtol=0, atol=1e-12 * np.abs(want).max())
        if value.ndim == 2 and name != "tH":
            np.testing.assert_array_equal(value, value.T)


@pytest.mark.parametrize("rows", [16, 1024])
def test_dprime_gram_is_the_explicit_sum_and_the_first_pass_matrix(rows, monkeypatch):
    """dprime_gram (a state whose first pass did not build sum_i d'_i g_i g_i^T) against the
    explicit sum over rows at 1e-12, exactly symmetric, and bitwise the first pass's dgram
    (one block builder and the same SYRKs serve both); d'_i < 0 rows count as 0."""
    import divpred._rowpass as rp

    monkeypatch.setattr(rp, "_SYRK_ROWS", rows)
    X, y = make_classification(150, 5, 4, seed=9)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    st = FittedState.from_model(model, X, y)
    G = model.per_point_gradients(X, y)
    d = st.row_stats.dprime.copy()
    d[::7] *= -1.0  # the clip at 0
    expected = sum(max(d[i], 0.0) * np.outer(G[i], G[i]) for i in range(G.shape[0]))
    got = rp.dprime_gram(st, d)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_array_equal(got, got.T)
    first = rp.gradient_row_stats(st, with_dgram=True)
    np.testing.assert_array_equal(rp.dprime_gram(st, first.dprime), first.dgram)


@pytest.mark.parametrize("method", ["fast1", "fast2"])
def test_fast_scores_do_not_depend_on_chunk_size(method):
    X, y = make_classification(150, 5, 4, seed=3)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    scores, variances = [], []
    for chunk in (1, 7, 150, None):
        st = FittedState.from_model(model, X, y, for_fast_scores=chunk != 7)
        st.chunk_size = chunk
        scores.append(_fast1(st) if method == "fast1" else st.variance - _fast2(st))
        variances.append(st.variance)
    scale = np.abs(scores[-1]).max()
    for s, v in zip(scores[:-1], variances[:-1], strict=True):
        np.testing.assert_allclose(s, scores[-1], rtol=0, atol=1e-13 * scale)
        assert v == pytest.approx(variances[-1], rel=1e-13)


def test_fast1_holds_no_n_by_m_array(monkeypatch):
    """Peak traced memory of the whole fast1 call stays below one copy of G (n x m)."""
    import divpred._rowpass

    # blocks of 1 MB, so that n = 30 000 rows are many blocks, as 10^6 rows are with 16 MB
    monkeypatch.setattr(divpred._rowpass, "_CHUNK_BYTES", 2**20)
    n = 30_000
    X, y = make_classification(n, 30, 4, seed=5)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    g_bytes = n * 3 * 31 * 8
    tracemalloc.start()
    try:
        delta_scores(model, X, y, "fast1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Xa (n x D), P, W and a few (n, B) arrays are about 0.6 G here; G itself would add 1.0
    assert peak < 0.9 * g_bytes, peak / g_bytes


def test_fast2_holds_few_n_by_n_arrays(monkeypatch):
    """Chunked over candidates, fast2's primal form keeps blocks of rows, not about 4 B + 2
    whole n x n matrices; the scores do not depend on the block size."""
    import divpred._fast2_primal

    X, y = make_classification(1200, 5, 4, seed=6)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    whole = delta_scores(model, X, y, "fast2")
    monkeypatch.setattr(divpred._fast2_primal, "_BLOCK_BYTES", 2**20)  # about 10 candidates
    tracemalloc.start()
    try:
        blocked = delta_scores(model, X, y, "fast2")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-13 * np.abs(whole).max())
    nn_bytes = 1200 * 1200 * 8
    assert peak < 3 * nn_bytes, peak / nn_bytes
