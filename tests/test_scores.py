"""delta(z) = V(Z) - V(Z \\ z): exact paths against a brute force, fast paths against exact."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from divpred import MultinomialLogit, delta_scores, influence_variance
from divpred.models._softmax import contrast_basis

from .conftest import make_classification


def brute_force_exact(model, X, y):
    """The paper's semantics, one candidate at a time, with an explicit n x n matrix."""
    n, d = X.shape
    C = model.classes_.shape[0]
    Q = contrast_basis(C)
    G = model.per_point_gradients(X, y)
    H = model.hessian(X)
    V = np.var(_offdiag(-G @ np.linalg.solve(H, G.T)))
    out = np.empty(n)
    for z in range(n):
        theta = model.theta_ + Q @ (np.linalg.solve(H, G[z]) / n).reshape(C - 1, d + 1)
        shifted = MultinomialLogit(alpha=model.alpha, damping=model.damping)
        shifted.classes_, shifted.n_features_in_ = model.classes_, d
        shifted.coef_, shifted.intercept_ = theta[:, :-1], theta[:, -1]
        keep = np.arange(n) != z
        Gz = shifted.per_point_gradients(X[keep], y[keep])
        Hz = shifted.hessian(X[keep])  # mean over the n - 1 kept points, damped
        out[z] = V - np.var(_offdiag(-Gz @ np.linalg.solve(Hz, Gz.T)))
    return out


def _offdiag(K):
    return K[~np.eye(K.shape[0], dtype=bool)]


@pytest.mark.parametrize("n,d,C", [(40, 3, 2), (35, 4, 3), (30, 3, 4), (12, 15, 2)])
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_exact_equals_brute_force(n, d, C, form):
    X, y = make_classification(n, d, C, seed=n * C + d)
    model = MultinomialLogit(alpha=1e-2, damping=0.01).fit(X, y)
    expected = brute_force_exact(model, X, y)
    got = delta_scores(model, X, y, "exact", exact_form=form)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_exact_auto_reports_form_and_variance():
    X, y = make_classification(30, 3, 3, seed=1)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    scores, info = delta_scores(model, X, y, "exact", return_info=True)
    assert info["form"] in ("primal", "dual")
    assert info["variance"] == pytest.approx(influence_variance(model, X, y), rel=1e-10)


def test_refit_is_true_leave_one_out_and_ranks_like_exact():
    X, y = make_classification(60, 2, 3, seed=2, noise=0.5)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    refit = delta_scores(model, X, y, "refit")
    # independent check of two entries: refit from scratch on Z \ z
    V = influence_variance(model, X, y)
    for z in (0, 17):
        keep = np.arange(60) != z
        sub = MultinomialLogit(alpha=1e-2).fit(X[keep], y[keep])
        assert refit[z] == pytest.approx(V - influence_variance(sub, X[keep], y[keep]), rel=1e-7)
    exact = delta_scores(model, X, y, "exact")
    assert spearmanr(refit, exact)[0] > 0.9


@pytest.mark.parametrize("method,min_rho", [("fast1", 0.99), ("fast2", 0.99)])
def test_fast_matches_exact_when_n_much_larger_than_m(method, min_rho):
    X, y = make_classification(600, 2, 3, seed=3)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    exact = delta_scores(model, X, y, "exact")
    fast = delta_scores(model, X, y, method)
    assert spearmanr(fast, exact)[0] > min_rho
    top = set(np.argsort(-exact)[:10])
    assert len(top & set(np.argsort(-fast)[:10])) >= 8


def test_fast2_beats_fast1_when_n_smaller_than_m():
    # n = 40 < m = 2 * 31: the first-order expansion is poor, the semi-exact one is not
    X, y = make_classification(40, 30, 3, seed=4)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    exact = delta_scores(model, X, y, "exact")
    rho1 = spearmanr(delta_scores(model, X, y, "fast1"), exact)[0]
    rho2 = spearmanr(delta_scores(model, X, y, "fast2"), exact)[0]
    assert rho2 > 0.95
    assert rho2 > rho1


@pytest.mark.parametrize("n,expected", [(30, "fast2"), (200, "fast1")])
def test_fast_chooses_and_reports_variant(n, expected):
    X, y = make_classification(n, 3, 3, seed=5)  # m = 2 * 4 = 8
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    _, info = delta_scores(model, X, y, "fast", return_info=True)
    assert info["method"] == expected
    np.testing.assert_array_equal(
        delta_scores(model, X, y, "fast"), delta_scores(model, X, y, expected)
    )


def test_baselines():
    X, y = make_classification(50, 3, 3, seed=6)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    G = model.per_point_gradients(X, y)
    H = model.hessian(X)
    np.testing.assert_allclose(
        delta_scores(model, X, y, "self_influence"),
        np.einsum("ij,ji->i", G, np.linalg.solve(H, G.T)),
        rtol=1e-10,
    )
    P = model.predict_proba(X)
    np.testing.assert_allclose(
        delta_scores(model, X, y, "loss"),
        -np.log(P[np.arange(50), np.searchsorted(model.classes_, y)]),
    )
    a = delta_scores(model, X, y, "random", random_state=1)
    b = delta_scores(model, X, y, "random", random_state=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, delta_scores(model, X, y, "random", random_state=2))


def test_bad_method_and_too_few_points():
    X, y = make_classification(20, 2, 2, seed=7)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    with pytest.raises(ValueError, match="method"):
        delta_scores(model, X, y, "nope")
    with pytest.raises(ValueError, match="at least"):
        delta_scores(model, X[:3], y[:3], "exact")


def test_top_delta_points_are_contaminants_on_sd2(paper_data):
    """Rows 700..999 of SD-2 come from the second distribution (30% of the data).

    A ranking blind to the distribution puts a hypergeometric number of them in its top 50
    (mean 15; 48 or more with probability < 1e-20). The fast scores put (measured) 50 there,
    and 98 in the top 100, more than the loss and self-influence baselines (82, 83).
    """
    from divpred.data import load_sd_csv

    sd = load_sd_csv(paper_data / "synthetic_train_mix_2spec.csv")
    model = MultinomialLogit(alpha=1e-4).fit(sd.X, sd.y)
    scores = delta_scores(model, sd.X, sd.y, "fast")
    second = np.arange(sd.X.shape[0]) >= 700
    assert second[np.argsort(-scores)[:50]].sum() >= 48
    top100 = second[np.argsort(-scores)[:100]].sum()
    for baseline in ("loss", "self_influence"):
        other = delta_scores(model, sd.X, sd.y, baseline)
        assert top100 > second[np.argsort(-other)[:100]].sum() + 5, baseline
    assert scores.max() > 0  # a descent exists


@pytest.mark.parametrize("method", ["fast1", "fast2"])
def test_binary_dual_fast_paths_equal_primal(method, monkeypatch):
    """For two classes and n < m the fast scores use n x n algebra; it must equal the primal."""
    from divpred._state import FittedState

    X, y = make_classification(25, 40, 2, seed=9)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    dual, info = delta_scores(model, X, y, method, return_info=True)
    monkeypatch.setattr(FittedState, "binary_dual", property(lambda self: False))
    primal, info_primal = delta_scores(model, X, y, method, return_info=True)
    np.testing.assert_allclose(dual, primal, rtol=1e-9, atol=1e-12 * np.abs(primal).max())
    assert info["variance"] == pytest.approx(info_primal["variance"], rel=1e-10)


def test_pair_removal_delta_has_no_cancellation():
    """V - V_pair(z) from the rearranged form against extended precision of the naive form."""
    from divpred._state import pair_removal_delta, variance_from_sums

    rng = np.random.default_rng(0)
    n = 200_000
    K_rows = rng.normal(size=(n,))  # stand-ins for r_z - K_zz and sum_j K_zj^2 - K_zz^2
    b = K_rows * 3.0
    a = np.abs(K_rows) * 50.0 + 1.0
    S1, S2 = float(b.sum()) / 2.0, float(a.sum()) / 2.0
    got = pair_removal_delta(S1, S2, n, b, a, 0.0, 0.0)
    ld = np.longdouble
    Nl, Npl = ld(n) * (n - 1), ld(n - 1) * (n - 2)
    V = ld(S2) / Nl - (ld(S1) / Nl) ** 2
    Vz = (ld(S2) - 2 * a.astype(ld)) / Npl - ((ld(S1) - 2 * b.astype(ld)) / Npl) ** 2
    expected = (V - Vz).astype(np.float64)
    if np.finfo(ld).eps > 1e-18:
        pytest.skip("no extended precision long double on this platform")
    scale = np.max(np.abs(expected))
    err = np.max(np.abs(got - expected)) / scale
    Np = (n - 1.0) * (n - 2.0)
    naive = variance_from_sums(S1, S2, n) - ((S2 - 2 * a) / Np - ((S1 - 2 * b) / Np) ** 2)
    naive_err = np.max(np.abs(naive - expected)) / scale
    assert err < 1e-13
    assert naive_err > 10 * err  # the direct subtraction loses about log10(n) digits
    assert variance_from_sums(S1, S2, n) == pytest.approx(float(V), rel=1e-14)


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_exact_scores_do_not_depend_on_worker_threads(form):
    X, y = make_classification(40, 3, 3, seed=21)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    one = delta_scores(model, X, y, "exact", exact_form=form)
    two = delta_scores(model, X, y, "exact", exact_form=form, n_jobs=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, brute_force_exact(model, X, y), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [0, 1.5, "2", True])
def test_bad_n_jobs(bad):
    X, y = make_classification(20, 2, 2, seed=22)
    model = MultinomialLogit().fit(X, y)
    with pytest.raises(ValueError, match="n_jobs"):
        delta_scores(model, X, y, "exact", n_jobs=bad)


def brute_force_fixed_parameters(model, X, y):
    """V(Z \\ z) at the full fit's parameters (no model shift), one candidate at a time: the
    gradients and the damped mean Hessian of the n - 1 kept points, an explicit n x n matrix."""
    n = X.shape[0]
    out = np.empty(n)
    for z in range(n):
        keep = np.arange(n) != z
        G = model.per_point_gradients(X[keep], y[keep])
        H = model.hessian(X[keep])  # mean over the kept points, damped
        out[z] = np.var(_offdiag(-G @ np.linalg.solve(H, G.T)))
    return out


@pytest.mark.parametrize("n,d,C", [(40, 3, 3), (25, 40, 2), (30, 20, 3)])
def test_fast2_fixed_parameter_part_is_exact(n, d, C, monkeypatch):
    """fast2 = V - (V_fixed(z) + first-order model shift); V_fixed, the Woodbury downdate of the
    Hessian, is exact. With the shift switched off it must equal the brute force to rounding
    (n > m primal, and n < m binary dual and multiclass)."""
    import divpred.scores as scores_module

    X, y = make_classification(n, d, C, seed=n + d)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    for name in ("_first_order_terms", "_first_order_terms_dual"):
        real = getattr(scores_module, name)

        def no_shift(state, real=real):
            f = real(state)
            f["shift"] = np.zeros_like(f["shift"])
            f["s_vec"] = np.zeros_like(f["s_vec"])
            return f

        monkeypatch.setattr(scores_module, name, no_shift)
    V = influence_variance(model, X, y)
    v_fixed = V - delta_scores(model, X, y, "fast2")
    expected = brute_force_fixed_parameters(model, X, y)
    np.testing.assert_allclose(v_fixed, expected, rtol=1e-8, atol=1e-10 * np.abs(expected).max())
