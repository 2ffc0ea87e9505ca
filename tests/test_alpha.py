"""alpha="auto" / "auto-grid" / "auto-alo": the L2 strength of least 5-fold cross-validated
(searched from 1e-4, or on the whole grid) / approximate leave-one-out log-loss, on the kept
rows."""

import numpy as np
import pandas as pd
import pytest

from divpred import MultinomialLogit, Purifier, cli, delta_scores
from divpred.calibration import crossfit_folds
from divpred.models import _softmax as sm
from divpred.models._alo import alo_log_probabilities
from divpred.models._alpha import ALPHA_GRID, REFERENCE_ALPHA

from .test_purify import _interrupting, mixed_data


def brute_force_cv(X, y, alphas=ALPHA_GRID, seed=0):
    """Mean held-out log-loss per alpha: cold fits on each 4/5, predicted on the last 1/5."""
    fold = crossfit_folds(y, seed)
    classes = np.unique(y)
    out = []
    for a in alphas:
        loss = np.zeros(y.shape[0])
        for f in range(5):
            tr, te = fold != f, fold == f
            model = MultinomialLogit(alpha=a, max_iter=500).fit(X[tr], y[tr])
            P = model.predict_proba(X[te])
            loss[te] = -np.log(P[np.arange(te.sum()), np.searchsorted(classes, y[te])])
        out.append(loss.mean())
    return np.array(out)


def newton_step_loo(X, y, alpha):
    """log p(. | x_i) after one explicit Newton step, from the fit on all rows, on the objective
    of the n - 1 other rows (its own mean gradient and Hessian, solved densely)."""
    model = MultinomialLogit(alpha=alpha).fit(X, y)
    C = model.classes_.shape[0]
    Q = sm.contrast_basis(C)
    phi = (Q.T @ model.theta_).ravel()
    G = model.per_point_gradients(X, y)
    out = np.empty((y.shape[0], C))
    for i in range(y.shape[0]):
        rest = np.arange(y.shape[0]) != i
        H = model.hessian(X[rest], damped=False)
        step = np.linalg.solve(H, G[rest].mean(axis=0) + alpha * phi)
        theta = Q @ (phi - step).reshape(C - 1, -1)
        out[i] = sm.log_probabilities(sm.augment(X[i:i + 1]), theta)[0]
    return out


def brute_force_alo(X, y, alphas=ALPHA_GRID):
    """Mean log-loss of the one-Newton-step leave-one-out probabilities, per alpha."""
    yidx = np.searchsorted(np.unique(y), y)
    return np.array([-np.mean(newton_step_loo(X, y, a)[np.arange(y.shape[0]), yidx])
                     for a in alphas])


def linear_rule(n=240, d=4, seed=0):
    """A noiseless linear rule with many rows per weight: weak penalties predict best."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X @ np.array([1.5, -1.0, 0.5, 2.0]) + 0.3 * rng.normal(size=n) > 0).astype(int)
    return X, y


@pytest.mark.parametrize("n, d, C, alpha", [
    (40, 3, 3, 1e-1),  # primal: n B >= m
    (40, 3, 3, 1e-4),
    (30, 40, 2, 1e-2),  # dual: n B < m, binary
    (20, 30, 3, 1e-3),  # dual, B = 2
    (16, 30, 4, 1e-1),
])
def test_alo_is_one_newton_step_of_the_leave_one_out_objective(n, d, C, alpha):
    rng = np.random.default_rng(n + d)
    y = np.arange(n) % C
    X = rng.normal(size=(n, d))
    X[:, 0] += y
    model = MultinomialLogit(alpha=alpha).fit(X, y)
    np.testing.assert_allclose(alo_log_probabilities(model, X, y), newton_step_loo(X, y, alpha),
                               rtol=0, atol=1e-7)


def test_alo_recovers_the_refit_shift_of_real_leave_one_out():
    """Against n brute-force refits: the one-step error is second order in the shift, so the
    approximate LOO log-loss must close almost all of the gap between the in-sample and the real
    leave-one-out log-loss (measured: 1%; bound 5%), and a model that ignores the refit (the
    in-sample probabilities) must fail the same bound."""
    rng = np.random.default_rng(1)
    n = 120
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + 0.7 * rng.normal(size=n) > 0).astype(int) + (X[:, 1] > 0.8)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    exact = np.array([MultinomialLogit(alpha=1e-2).fit(np.delete(X, i, 0), np.delete(y, i))
                      .predict_log_proba(X[i:i + 1])[0] for i in range(n)])
    rows = np.arange(n)

    def loss(logp):
        return -logp[rows, y].mean()

    full = model.predict_log_proba(X)
    alo = alo_log_probabilities(model, X, y)
    gap = abs(loss(full) - loss(exact))
    assert gap > 0.02  # the refits do move the predictions
    assert abs(loss(alo) - loss(exact)) <= 0.05 * gap
    assert np.abs(alo - exact).mean() <= 0.05 * np.abs(full - exact).mean()


@pytest.mark.parametrize("alpha", ["auto", "auto-grid", "auto-alo"])
def test_model_alpha_auto_is_the_brute_force_grid_choice(alpha):
    X, y = linear_rule()
    model = MultinomialLogit(alpha=alpha).fit(X, y)
    losses = brute_force_alo(X, y) if alpha == "auto-alo" else brute_force_cv(X, y)
    seen = ~np.isnan(model.alpha_scores_)
    assert seen.all() == (alpha == "auto-grid")  # the descent skips part of the grid
    np.testing.assert_allclose(model.alpha_scores_[seen], losses[seen], rtol=1e-6)
    assert model.alpha_ == ALPHA_GRID[int(np.argmin(losses))]  # the minimum of the whole grid
    assert model.get_params()["alpha"] == alpha  # the parameter is stored unchanged
    # a cold fit with the chosen value: the same minimiser to the fits' tolerance ("auto-alo"
    # keeps its warm-started fit of the grid, gradient max-norm <= 1e-10 like this one)
    numeric = MultinomialLogit(alpha=model.alpha_).fit(X, y)
    np.testing.assert_allclose(model.coef_, numeric.coef_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(model.hessian(X), numeric.hessian(X), rtol=1e-7)
    # the influence code reads the chosen value, not the string
    np.testing.assert_allclose(delta_scores(model, X, y, "fast"),
                               delta_scores(numeric, X, y, "fast"), rtol=1e-6)


def test_alo_selection_is_the_argmin_and_a_different_loss_profile_moves_it():
    """The choice follows the criterion: on 30 rows of 30 features with label noise the
    strongest penalties win, on the clean linear rule the weakest."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 30))
    y = rng.integers(0, 2, 60)
    noisy = MultinomialLogit(alpha="auto-alo").fit(X, y)
    clean = MultinomialLogit(alpha="auto-alo").fit(*linear_rule())
    for model in (noisy, clean):
        assert model.alpha_ == ALPHA_GRID[int(np.nanargmin(model.alpha_scores_))]
    assert noisy.alpha_ >= 1e-2 and clean.alpha_ <= 1e-4


@pytest.mark.parametrize("curve, visited", [
    ([0, 1, 2, 3, 4, 5], [0, 1, 2]),  # falls towards small alpha: walks to the edge
    ([3, 2, 1, 2, 3, 4], [1, 2, 3]),  # minimum at the start (1e-4): one step each way
    ([5, 4, 3, 2, 1, 0], [1, 2, 3, 4, 5]),  # falls towards large alpha
    ([4, 3, 2, 1, 2, 3], [1, 2, 3, 4]),
    ([2, 1, 3, 4, 5, 6], [0, 1, 2]),  # stops where it rises again
])
def test_descent_visits_the_neighbours_it_needs_and_ends_at_the_grid_minimum(curve, visited):
    from divpred.models._alpha import _search_grid

    calls = []

    def loss_at(j, source):
        # every evaluation but the first is warm-started from a visited neighbour
        assert (source is None) == (not calls)
        assert source is None or (source in calls and abs(source - j) == 1)
        calls.append(j)
        return float(curve[j])

    losses = _search_grid(loss_at, ALPHA_GRID, "descent")
    assert sorted(calls) == visited and len(set(calls)) == len(calls)
    assert calls[0] == ALPHA_GRID.index(REFERENCE_ALPHA)
    assert np.nanargmin(losses) == int(np.argmin(curve))
    assert np.isnan(losses[[j for j in range(6) if j not in visited]]).all()
    grid = _search_grid(lambda j, source: float(curve[j]), ALPHA_GRID, "grid")
    np.testing.assert_array_equal(grid, curve)


@pytest.mark.parametrize("method", ["cv", "alo"])
def test_descent_matches_the_grid_criterion_where_it_goes(method):
    from divpred.models._alpha import choose_alpha

    X, y = linear_rule(n=160)
    start = MultinomialLogit(alpha=REFERENCE_ALPHA).fit(X, y)
    a_grid, grid, _ = choose_alpha(MultinomialLogit(), X, y, method=method)
    a_walk, walk, fit = choose_alpha(MultinomialLogit(), X, y, method=method, search="descent",
                                     start=start)
    seen = ~np.isnan(walk)
    assert 3 <= seen.sum() < len(ALPHA_GRID)  # it did skip part of the grid
    np.testing.assert_allclose(walk[seen], grid[seen], rtol=1e-7)
    assert a_walk == a_grid
    if method == "alo":
        expect = MultinomialLogit(alpha=a_walk).fit(X, y)
        np.testing.assert_allclose(fit.coef_, expect.coef_, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("alpha", ["auto", "auto-grid", "auto-alo"])
def test_purifier_alpha_auto_keeps_the_reference_rows_and_refits_with_the_choice(alpha):
    X, y, contam = mixed_data(seed=2, n1=240, n2=60)
    kwargs = dict(k=6, random_state=1)
    auto = Purifier(MultinomialLogit(alpha=alpha), **kwargs).fit(X, y)
    reference_run = Purifier(MultinomialLogit(alpha=REFERENCE_ALPHA), **kwargs).fit(X, y)
    np.testing.assert_array_equal(auto.keep_mask_, reference_run.keep_mask_)
    pd.testing.assert_frame_equal(auto.history_, reference_run.history_)
    keep = auto.keep_mask_
    losses = (brute_force_alo(X[keep], y[keep]) if alpha == "auto-alo"
              else brute_force_cv(X[keep], y[keep], seed=1))  # folds seeded by random_state
    seen = ~np.isnan(auto.alpha_scores_)
    np.testing.assert_allclose(auto.alpha_scores_[seen], losses[seen], rtol=1e-6)
    assert auto.alpha_ == ALPHA_GRID[int(np.argmin(losses))]
    assert auto.alpha_ != REFERENCE_ALPHA  # the refit path is exercised
    expect = MultinomialLogit(alpha=auto.alpha_).fit(X[keep], y[keep])
    np.testing.assert_allclose(auto.model_.coef_, expect.coef_, rtol=1e-7, atol=1e-9)
    assert auto.model_.alpha == auto.alpha_


def test_purifier_default_model_is_alpha_auto():
    X, y, _ = mixed_data(seed=2)
    pur = Purifier(k=5).fit(X, y)
    assert pur.get_params()["model"] is None
    assert pur.alpha_ in ALPHA_GRID and pur.model_.alpha == pur.alpha_
    assert not hasattr(Purifier(MultinomialLogit(alpha=1e-3), k=5).fit(X, y), "alpha_")


@pytest.mark.parametrize("alpha", ["Auto", "auto-cv", "auto-ALO", "1e-4", -1.0, float("nan"),
                                   float("inf"), True, None, [1e-4]])
def test_invalid_alpha_is_a_value_error(alpha):
    X, y, _ = mixed_data()
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0 or 'auto'"):
        MultinomialLogit(alpha=alpha).fit(X, y)
    with pytest.raises(ValueError, match="alpha must be"):
        Purifier(MultinomialLogit(alpha=alpha), k=5).fit(X, y)


def test_alpha_auto_run_resumes_to_the_identical_result(tmp_path, monkeypatch):
    X, y, _ = mixed_data(seed=3, n1=240, n2=60)
    kwargs = dict(k=6, max_iter=8, stop="none", random_state=4)
    whole = Purifier(MultinomialLogit(alpha="auto"), **kwargs).fit(X, y)
    ckpt = tmp_path / "run.npz"
    with monkeypatch.context() as m:
        _interrupting(m, after=3)
        with pytest.raises(KeyboardInterrupt):
            Purifier(MultinomialLogit(alpha="auto"), checkpoint=ckpt, **kwargs).fit(X, y)
    resumed = Purifier(MultinomialLogit(alpha="auto"), checkpoint=ckpt, **kwargs).fit(X, y)
    pd.testing.assert_frame_equal(resumed.history_, whole.history_)
    assert resumed.alpha_ == whole.alpha_
    np.testing.assert_array_equal(resumed.alpha_scores_, whole.alpha_scores_)
    np.testing.assert_array_equal(resumed.model_.coef_, whole.model_.coef_)


@pytest.mark.parametrize("argv", [
    ["purify", "{data}", "--label", "label", "--alpha", "much", "--out", "{out}"],
    ["purify", "{data}", "--label", "label", "--alpha", "-1", "--out", "{out}"],
    ["fit", "{data}", "--label", "label", "--alpha", "nan", "--model", "{out}/m.divpred"],
    ["fit", "{data}", "--label", "label", "--kind", "dnp", "--alpha", "auto",
     "--model", "{out}/m.divpred"],
])
def test_cli_rejects_bad_alpha_in_one_line(argv, tmp_path, capsys):
    data = tmp_path / "train.csv"
    X, y, _ = mixed_data()
    pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=y).to_csv(data, index=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        code = cli.main([a.format(data=data, out=out) for a in argv])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("divpred: error:") and "alpha" in err[-1]
    assert not (out / "m.divpred").exists() and not (out / "history.csv").exists()


def test_cli_purify_alpha_auto_and_number(tmp_path, capsys):
    data = tmp_path / "train.csv"
    X, y, _ = mixed_data(seed=2)
    pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=y).to_csv(data, index=False)
    for alpha in ("auto", "0.001"):
        code = cli.main(["purify", str(data), "--label", "label", "--alpha", alpha, "--k", "5",
                         "--out", str(tmp_path / alpha), "-q"])
        assert code == 0
        assert (tmp_path / alpha / "keep_mask.npy").exists()


@pytest.mark.parametrize("C, start", [(2, True), (3, True), (3, False)])
def test_direct_newton_folds_give_the_plain_fits_losses_to_the_last_bit(C, start, monkeypatch):
    """The cross-validated losses from Newton run on the folds' augmented designs equal those
    of clone + fit + predict_proba on every fold (forced by switching the direct path off),
    bit for bit, on every grid value; the direct path did serve the warm-started folds."""
    import divpred.models._alpha as alpha_module

    rng = np.random.default_rng(C)
    X = rng.normal(size=(150, 4))
    y = np.argmax(X[:, :C] + 0.8 * rng.normal(size=(150, C)), axis=1)
    model = MultinomialLogit(alpha=REFERENCE_ALPHA)
    first = model.fit(X, y) if start else None
    served = []
    real = alpha_module._DirectNewton.fit
    monkeypatch.setattr(alpha_module._DirectNewton, "fit",
                        lambda self, *a: served.append(real(self, *a)) or served[-1])
    direct = alpha_module.cross_validated_log_loss(model, X, y, search="grid", start=first)
    assert sum(f is not None for f in served) == 5 * (len(ALPHA_GRID) - (0 if start else 1))
    monkeypatch.setattr(alpha_module._DirectNewton, "applies", staticmethod(lambda m, X: False))
    plain = alpha_module.cross_validated_log_loss(model, X, y, search="grid", start=first)
    np.testing.assert_array_equal(direct, plain)
    assert np.all(np.isfinite(direct))
