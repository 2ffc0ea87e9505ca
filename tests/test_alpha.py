"""alpha="auto": the L2 strength of least cross-validated log-loss, on the kept rows."""

import numpy as np
import pandas as pd
import pytest

from divpred import MultinomialLogit, Purifier, cli, delta_scores
from divpred.calibration import crossfit_folds
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


def linear_rule(n=240, d=4, seed=0):
    """A noiseless linear rule with many rows per weight: weak penalties predict best."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X @ np.array([1.5, -1.0, 0.5, 2.0]) + 0.3 * rng.normal(size=n) > 0).astype(int)
    return X, y


def test_model_alpha_auto_is_the_brute_force_grid_choice():
    X, y = linear_rule()
    model = MultinomialLogit(alpha="auto").fit(X, y)
    losses = brute_force_cv(X, y)
    np.testing.assert_allclose(model.alpha_scores_, losses, rtol=1e-6)
    assert model.alpha_ == ALPHA_GRID[int(np.argmin(losses))]
    assert model.get_params()["alpha"] == "auto"  # the parameter is stored unchanged
    numeric = MultinomialLogit(alpha=model.alpha_).fit(X, y)
    np.testing.assert_allclose(model.coef_, numeric.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.hessian(X), numeric.hessian(X), rtol=1e-10)
    # the influence code reads the chosen value, not the string
    np.testing.assert_allclose(delta_scores(model, X, y, "fast"),
                               delta_scores(numeric, X, y, "fast"), rtol=1e-8)


def test_purifier_alpha_auto_keeps_the_reference_rows_and_refits_with_the_cv_choice():
    X, y, contam = mixed_data(seed=2, n1=240, n2=60)
    kwargs = dict(k=6, random_state=1)
    auto = Purifier(MultinomialLogit(alpha="auto"), **kwargs).fit(X, y)
    reference = Purifier(MultinomialLogit(alpha=REFERENCE_ALPHA), **kwargs).fit(X, y)
    np.testing.assert_array_equal(auto.keep_mask_, reference.keep_mask_)
    pd.testing.assert_frame_equal(auto.history_, reference.history_)
    keep = auto.keep_mask_
    losses = brute_force_cv(X[keep], y[keep], seed=1)  # folds seeded by random_state
    np.testing.assert_allclose(auto.alpha_scores_, losses, rtol=1e-6)
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


@pytest.mark.parametrize("alpha", ["Auto", "1e-4", -1.0, float("nan"), float("inf"), True,
                                   None, [1e-4]])
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
