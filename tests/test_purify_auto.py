"""stop="auto": the calibration statistic, its rule, the fraction parameters and the defaults."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from divpred import MultinomialLogit, Purifier
from divpred.calibration import crossfit_folds, label_excess_z, label_pvalues
from divpred.data import flip_labels, load_digits_pair, make_sd
from divpred.stopping import (
    auto_decision,
    auto_fallback,
    auto_rule,
    calibration_rule,
    choose_iteration,
    null_median_excess_z,
)

from .test_purify import _interrupting, mixed_data


# ----------------------------------------------------------------------- the statistic
def test_pvalues_are_uniform_when_labels_follow_the_predictions():
    """The randomised PIT is exactly U(0, 1) under y ~ p: Kolmogorov-Smirnov at N = 20000."""
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.full(4, 0.3), size=20000)  # confident and split rows alike
    y = (rng.random((20000, 1)) > np.cumsum(P, axis=1)).sum(axis=1)
    u = label_pvalues(P, y, np.random.default_rng(1))
    assert stats.kstest(u, "uniform").pvalue > 0.01


def test_pvalues_of_contradicted_labels_are_small_and_of_ties_are_not():
    """A label with probability q under a confident prediction has u <= q; a 50/50 row any u."""
    P = np.array([[0.98, 0.01, 0.01], [0.5, 0.5, 0.0]])
    u = label_pvalues(np.tile(P, (2000, 1)), np.ones(4000, dtype=int),
                      np.random.default_rng(2))
    assert u[0::2].max() <= 0.02 + 1e-12  # below: nothing; tied with it: the other 0.01
    tie = u[1::2]  # classes 0 and 1 tie: u = U * 1.0, uniform on (0, 1)
    assert 0.45 < tie.mean() < 0.55


def test_excess_z_is_the_binomial_z_score_of_the_tail_count():
    u = np.concatenate([np.full(30, 0.005), np.full(970, 0.5)])  # 30 below 0.01, 30 below 0.1
    expect = max((30 - 1000 * t) / math.sqrt(1000 * t * (1 - t)) for t in (0.01, 0.05, 0.1))
    assert label_excess_z(u) == pytest.approx(expect)
    assert label_excess_z(u) == pytest.approx((30 - 10) / math.sqrt(9.9))


def test_folds_are_stratified_and_reproducible():
    y = np.repeat([0, 1, 2], [11, 20, 7])
    fold = crossfit_folds(y, 5, n_folds=5)
    for c in range(3):
        sizes = np.bincount(fold[y == c], minlength=5)
        assert sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(fold, crossfit_folds(y, 5, n_folds=5))


# ----------------------------------------------------------------------------- the rule
# 1000 rows, 10 removed per iteration: the probe window (3% of the rows) ends at iteration 3.
def _sizes(T, per_iteration=10):
    return 1000 - per_iteration * np.arange(T)


# V falls by 2 per iteration, then by 0.1 from iteration 5 on: the knee (slope < 1/3 of the
# steepest) is at 5; LATE_KNEE flattens at 12 instead.
LINEAR_THEN_FLAT = [20.0, 18.0, 16.0, 14.0, 12.0] + [11.9 - 0.1 * i for i in range(15)]
LATE_KNEE = [40.0 - 2.0 * t for t in range(12)] + [17.9 - 0.1 * i for i in range(8)]
HIGH = [8.0] * 4  # a persistent excess over the probe window


def test_null_median_matches_an_exact_computation():
    """Independent check: at n = 60 the exact law of max_tau z_tau, from the nested binomials
    (C_0.1 ~ Bin(n, 0.1), C_0.05 | C_0.1 ~ Bin(C_0.1, 1/2), C_0.01 | C_0.05 ~ Bin(C_0.05, 1/5));
    at n = 10^6 the Gaussian limit (a trivariate normal with corr = sqrt(a (1 - b) / (b (1 - a)))).
    The median lies where the CDF crosses 1/2."""
    n = 60
    levels = (0.01, 0.05, 0.1)

    def z_of(c1, c2, c3):
        counts = (c1, c2, c3)
        return max((c - n * t) / math.sqrt(n * t * (1 - t))
                   for c, t in zip(counts, levels, strict=True))

    law = {}
    for c3 in range(n + 1):
        p3 = stats.binom.pmf(c3, n, 0.1)
        for c2 in range(c3 + 1):
            p2 = p3 * stats.binom.pmf(c2, c3, 0.5)
            for c1 in range(c2 + 1):
                key = round(z_of(c1, c2, c3), 9)
                law[key] = law.get(key, 0.0) + p2 * stats.binom.pmf(c1, c2, 0.2)
    values = np.array(sorted(law))
    cdf = np.cumsum([law[v] for v in values])
    exact = values[np.searchsorted(cdf, 0.5)]  # the smallest value with CDF >= 1/2
    assert null_median_excess_z(n) == pytest.approx(exact, abs=1e-9)

    corr = np.array([[1.0 if a == b else math.sqrt(min(a, b) * (1 - max(a, b))
                                                    / (max(a, b) * (1 - min(a, b))))
                      for b in levels] for a in levels])
    limit = stats.multivariate_normal(np.zeros(3), corr)
    median = null_median_excess_z(10**6)
    assert limit.cdf(np.full(3, median - 0.02)) < 0.5 < limit.cdf(np.full(3, median + 0.02))
    assert 0.4 < median < 0.8  # not 0: z is a maximum over three levels


@pytest.mark.parametrize("n", [5, 37, 76, 181, 500, 2000, 10_000])
def test_exact_null_median_agrees_with_the_monte_carlo_within_its_noise(n):
    """The exact law (stopping.null_excess_law) against 20,000 multinomial draws: the CDF at
    the Monte Carlo median is 1/2 within 4 standard errors of an empirical CDF (0.0035); at
    small n z takes few values, so the two medians are often the same number (the values
    can differ where the CDF sits near 1/2 over a whole step, e.g. n = 76)."""
    from divpred.stopping import _null_median_monte_carlo, null_excess_law

    mc = _null_median_monte_carlo(n)
    exact = null_median_excess_z(n)
    wide = 10 * math.sqrt(n) + 1 if n < 50 else 3.0  # a few rows: z spreads over +-10 sqrt(n)
    values, cdf = null_excess_law(n, -wide, wide)
    assert exact == values[np.searchsorted(cdf, 0.5)]
    below = cdf[np.searchsorted(values, mc - 1e-9) - 1] if values[0] < mc - 1e-9 else 0.0
    at = cdf[np.searchsorted(values, mc + 1e-9) - 1]
    se = math.sqrt(0.25 / 20_000)
    assert below <= 0.5 + 4 * se and at >= 0.5 - 4 * se


def test_exact_null_law_is_the_brute_force_law_at_small_n():
    n, levels = 23, (0.01, 0.05, 0.1)
    from divpred.stopping import null_excess_law

    law = {}
    for c3 in range(n + 1):
        for c2 in range(c3 + 1):
            for c1 in range(c2 + 1):
                p = (stats.binom.pmf(c3, n, 0.1) * stats.binom.pmf(c2, c3, 0.5)
                     * stats.binom.pmf(c1, c2, 0.2))
                key = max((c - n * t) / math.sqrt(n * t * (1 - t))
                          for c, t in zip((c1, c2, c3), levels, strict=True))
                law[round(key, 9)] = law.get(round(key, 9), 0.0) + p
    keys = np.array(sorted(law))
    cdf = np.cumsum([law[v] for v in keys])
    values, exact_cdf = null_excess_law(n, -10 * math.sqrt(n) - 1, 10 * math.sqrt(n) + 1)
    at = np.searchsorted(values, keys - 1e-9)  # every value of the brute force is tabulated
    np.testing.assert_allclose(values[at], keys, atol=1e-9)
    np.testing.assert_allclose(exact_cdf[at], cdf, atol=1e-12)


@pytest.mark.parametrize("z, expect, test", [
    # one high z at iteration 0 and one at 3: median 2.5 over the window, no persistent excess
    ([5.0, 1.0, 1.0, 4.0] + [-1.0] * 16, 0, "no_excess"),
    # below the detection level at iteration 0, rising over the window (a hidden mixture):
    # detected (median 3.5); calibrated from 8 (median of z_7..z_9 = -1); the knee came at 5
    ([2.9, 3.1, 4.3, 3.9, 3.7, 4.6, 2.0, 2.0, -1.0, -1.0] + [-1.0] * 10, 8, "calibration"),
    # a single low draw (iteration 5) does not stop the run: its neighbours 2 and 3 keep the
    # median at 2; from iteration 8 on two of three are low
    (HIGH + [2.0, -1.0, 3.0, 2.0, -1.0, -1.0] + [-1.0] * 10, 8, "calibration"),
    # z = 0.3 is below the null median (about 0.6) though above 0: calibrated from 4, and the
    # knee at 5 is later
    (HIGH + [0.3] * 16, 5, "knee"),
])
def test_auto_rule_on_constructed_histories(z, expect, test):
    size = _sizes(len(z))
    d = auto_decision(np.array(z), np.array(LINEAR_THEN_FLAT), size)
    assert (d.iteration, d.test) == (expect, test)
    history = pd.DataFrame({"label_excess_z": z, "variance": LINEAR_THEN_FLAT, "size": size})
    assert choose_iteration(history, "auto", detect=3.0) == expect
    # the running purification passes its rows (a list of dicts) instead of a DataFrame
    assert choose_iteration(history.to_dict("records"), "auto", detect=3.0) == expect
    assert auto_rule(np.array(z), np.array(LINEAR_THEN_FLAT), size) == expect


def test_auto_rule_takes_the_later_knee():
    z = HIGH + [-1.0] * 16  # calibrated from iteration 4 (z_3 = 8, z_4 = z_5 = -1)
    d = auto_decision(np.array(z), np.array(LATE_KNEE), _sizes(20))
    assert (d.calibrated, d.knee, d.iteration, d.test) == (4, 12, 12, "knee")
    # before the knee the rule waits; the same history cut at 11 is pending
    assert auto_rule(np.array(z[:12]), np.array(LATE_KNEE[:12]), _sizes(12)) is None


def test_auto_rule_waits_for_the_probe_window_and_the_next_iteration():
    flat = np.array(LINEAR_THEN_FLAT)
    # iterations 0-2 removed 2% only: no decision yet, even with no excess at all
    assert auto_rule(np.zeros(3), flat[:3], _sizes(3)) is None
    assert auto_rule(np.zeros(4), flat[:4], _sizes(4)) == 0
    # with 10% per iteration the window still covers three iterations, 0-2
    assert auto_rule(np.array([5.0, 5.0]), flat[:2], _sizes(2, 100)) is None
    assert auto_rule(np.array([5.0, 1.0, 1.0]), flat[:3], _sizes(3, 100)) == 0
    assert auto_rule(np.array([5.0, 5.0, 1.0]), flat[:3], _sizes(3, 100)) is None  # detected
    # calibrated at 4 needs z_5: pending at 4, decided at 5
    z = np.array(HIGH + [-1.0] * 16)
    assert auto_rule(z[:5], flat[:5], _sizes(5)) is None
    assert auto_rule(z[:6], flat[:6], _sizes(6)) == 5  # max(calibrated 4, knee 5)


def test_auto_rule_skips_iterations_without_z():
    """NaN = not evaluated: the neighbours of an iteration are the nearest evaluated ones."""
    z = np.array(HIGH + [2.0, -1.0, np.nan, 2.0, -1.0, -1.0] + [-1.0] * 10)
    # evaluated ... 4: 2, 5: -1, 7: 2, 8: -1, 9: -1: at 5 the median of (2, -1, 2) is 2,
    # at 7 that of (-1, 2, -1) is -1
    assert auto_rule(z, np.array(LINEAR_THEN_FLAT), _sizes(20)) == 7


@pytest.mark.parametrize("z, variance, expect, test", [
    # the caps came before the excess fell: the last iteration
    (HIGH + [4.0] * 6, LINEAR_THEN_FLAT[:10], 9, "cap_excess"),
    # calibrated at 4, the knee (12) not reached by iteration 9: the calibration crossing
    (HIGH + [-1.0] * 6, LATE_KNEE[:10], 4, "cap_calibrated"),
    # the run ended inside the probe window: decided on the iterations there are
    ([1.0, 5.0, 1.0], LINEAR_THEN_FLAT[:3], 0, "no_excess"),
    ([5.0, 5.0, 1.0], LINEAR_THEN_FLAT[:3], 2, "cap_excess"),
])
def test_auto_fallback_when_the_caps_end_the_run(z, variance, expect, test):
    size = _sizes(len(z))
    assert auto_rule(np.array(z), np.array(variance), size) is None
    d = auto_decision(np.array(z), np.array(variance), size, final=True)
    assert (d.iteration, d.test) == (expect, test)
    assert auto_fallback(np.array(z), np.array(variance), size) == expect


def test_calibration_rule_is_the_excess_test_without_the_knee():
    z = HIGH + [-1.0] * 6
    assert calibration_rule(np.array(z), _sizes(10)) == 4
    assert calibration_rule(np.array([5.0, 1.0, 1.0, 4.0]), _sizes(4)) == 0
    assert calibration_rule(np.array(HIGH[:3]), _sizes(3)) is None


def test_the_auto_rule_on_a_history_without_label_excess_z_is_an_error():
    with pytest.raises(ValueError, match="label_excess_z"):
        choose_iteration(pd.DataFrame({"variance": [1.0]}), "auto")
    with pytest.raises(ValueError, match="label_excess_z"):
        choose_iteration([{"variance": 1.0}], "auto")


# ------------------------------------------------------------------------ the Purifier
def test_clean_data_keep_almost_everything():
    """Control: labels from one linear rule (SD-1) carry no foreign labels; <= 2% removed."""
    sd = make_sd([800], [1], random_state=11)
    pur = Purifier().fit(sd.X, sd.y)
    assert np.mean(~pur.keep_mask_) <= 0.02
    assert pur.stopped_by_ == "auto"
    assert "no persistent excess" in pur.stop_reason_
    # the loop ran the probe window (3% of the rows: 3 batches of 8) and went back to 0
    assert (pur.best_iteration_, pur.stop_iteration_) == (0, 3)
    assert pur.keep_mask_.all()
    # the model is the one fitted before any removal, not the one of the last probe iteration
    fixed = Purifier(MultinomialLogit(alpha=1e-4)).fit(sd.X, sd.y)
    assert (fixed.best_iteration_, fixed.stop_iteration_) == (0, 3)
    full = MultinomialLogit(alpha=1e-4).fit(sd.X, sd.y)
    np.testing.assert_allclose(fixed.model_.coef_, full.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.slow
def test_a_mixture_hidden_at_iteration_0_is_detected_over_the_probe_window():
    """SD-K two rules 60/40, n = 5000 (bench_auto's sdk-mix2-60-40-n5000): the compromise fit
    is unsure wherever the rules disagree, so z = 2.9 at iteration 0 (below calibration_z = 3:
    the rule before the probe window removed nothing, accuracy 0.568 instead of 0.96); as the
    descent removes rule-2 rows the fit turns to rule 1 and z rises over the window."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _auto_cases import build_sd

    data = build_sd(5000, 0, n_rules=2, minor=0.4)
    pur = Purifier().fit(data.X, data.y, eval_set=(data.X_test, data.y_test),
                         contamination=data.mask)
    z = pur.history_["label_excess_z"].to_numpy()
    assert z[0] <= 3.0 < np.median(z[:4])  # the case this test is about
    assert pur.stopped_by_ == "auto" and pur.best_iteration_ >= 20
    assert _gap(pur) <= 0.03
    assert pur.contamination_precision(data.mask) > 0.9  # chance: 0.4


def _gap(pur):
    acc = pur.history_["eval_accuracy"].to_numpy()
    return acc.max() - acc[pur.best_iteration_]


def test_label_noise_stops_near_the_best_iteration():
    """Digits 4/8 with 30% flipped labels.

    Independent reason for the bound: the wrong labels are what the held-out model
    contradicts; the rule stops when their excess is gone, which is where removing more stops
    paying. The issue's target for the worst case (0.03) bounds the gap to the hindsight best,
    and at least the flipped rows' share of the data must have gone.
    """
    data = load_digits_pair(4, 8)
    rng = np.random.default_rng(0)
    test = rng.random(data.y.size) < 0.5
    y_noisy, flipped = flip_labels(data.y[~test], 0.3, random_state=1)
    pur = Purifier(MultinomialLogit(alpha=1e-4), max_iter="auto", record_calibration=True)
    pur.fit(data.X[~test], y_noisy, eval_set=(data.X[test], data.y[test]), contamination=flipped)
    assert pur.best_iteration_ > 0
    assert np.mean(~pur.keep_mask_) >= 0.3
    assert _gap(pur) <= 0.03
    assert pur.contamination_precision(flipped) > 0.5  # chance: 0.3


def test_rule_mixture_stops_near_the_best_iteration():
    """SD-2 (70% rule 1, 30% rule 2): the auto rule stops where the rule-2 rows have gone.

    Independent reason: the contaminants are confidently contradicted by the held-out model;
    the clean 'threshold ties' that the descent removes after them sit where the predictions
    are split, so their p-values are not small and they do not delay the stop (unlike the
    agreement rule, docs/purification.md section 5).
    """
    train = make_sd([490, 210], [1, 2], random_state=3)
    test = make_sd([1000], [1], random_state=4)
    pur = Purifier().fit(train.X, train.y, eval_set=(test.X, test.y),
                         contamination=train.source != 0)
    assert pur.stopped_by_ == "auto" and pur.best_iteration_ > 0
    assert _gap(pur) <= 0.03
    assert pur.contamination_precision(train.source != 0) > 0.8  # chance: 0.3


@pytest.mark.parametrize("n", [200, 1000])
def test_fraction_parameters_scale_with_n(n):
    X, y, _ = mixed_data(seed=2, n1=int(0.7 * n), n2=n - int(0.7 * n))
    pur = Purifier(k=0.02, max_iter=0.1, stop="none").fit(X, y)
    assert pur.k_ == math.ceil(0.02 * n) and pur.max_iter_ == math.ceil(0.1 * n / pur.k_)
    assert pur.stop_iteration_ == pur.max_iter_
    auto = Purifier(stop="none", max_fraction=0.2).fit(X, y)
    assert auto.k_ == math.ceil(n / 100)
    assert auto.removal_order_.size <= 0.2 * n < auto.removal_order_.size + auto.k_
    assert auto.stopped_by_ == "max_fraction"


@pytest.mark.parametrize("params, fragment", [
    (dict(k=0), "k must be"),
    (dict(k=1.0), "k must be"),
    (dict(k=-0.5), "k must be"),
    (dict(k="many"), "k must be"),
    (dict(max_iter=0), "max_iter must be"),
    (dict(max_iter=1.5), "max_iter must be"),
    (dict(max_fraction=0.0), "max_fraction"),
    (dict(max_fraction=1.5), "max_fraction"),
    (dict(max_fraction=True), "max_fraction"),
    (dict(max_fraction="0.5"), "max_fraction"),
    (dict(calibration_z=float("nan")), "calibration_z"),
])
def test_bad_sizes_are_rejected(params, fragment):
    X, y, _ = mixed_data(seed=1)
    with pytest.raises(ValueError, match=fragment):
        Purifier(**params).fit(X, y)


@pytest.mark.parametrize("value", [True, "0.5", 0.0, 1.5, float("nan")])
def test_numpy_and_dask_purifiers_refuse_the_same_max_fraction(value):
    pytest.importorskip("dask")
    from divpred.backends.dask_backend import DaskPurifier

    X, y, _ = mixed_data(seed=1)
    with pytest.raises(ValueError, match="max_fraction"):
        Purifier(max_fraction=value).fit(X, y)
    with pytest.raises(ValueError, match="max_fraction"):
        DaskPurifier(max_fraction=value)


def test_auto_run_resumes_to_the_identical_history(tmp_path, monkeypatch):
    X, y, contam = mixed_data(seed=3)
    kwargs = dict(k=5, max_iter=8, record_calibration=True, stop="none", random_state=4)
    reference = Purifier(MultinomialLogit(alpha=1e-3), **kwargs).fit(X, y, contamination=contam)
    ckpt = tmp_path / "run.ckpt.npz"
    with monkeypatch.context() as m:
        _interrupting(m, after=3)
        with pytest.raises(KeyboardInterrupt):
            Purifier(MultinomialLogit(alpha=1e-3), checkpoint=ckpt, **kwargs).fit(
                X, y, contamination=contam)
    resumed = Purifier(MultinomialLogit(alpha=1e-3), checkpoint=ckpt, **kwargs).fit(
        X, y, contamination=contam)
    pd.testing.assert_frame_equal(resumed.history_, reference.history_)
    auto = Purifier(MultinomialLogit(alpha=1e-3), k=5, random_state=4).fit(X, y)
    # the same statistic decides the auto run: it stops where the rule says on the full curve
    expect = auto_rule(reference.history_["label_excess_z"].to_numpy(),
                       reference.history_["variance"].to_numpy(),
                       reference.history_["size"].to_numpy())
    if expect is not None and expect <= reference.stop_iteration_:
        assert auto.best_iteration_ == expect


def test_resumed_run_keeps_the_fold_fits_warm_starts(tmp_path, monkeypatch):
    """The z fold fits start from the previous iteration's fold solutions; a resumed run must
    start them from the same ones (saved in the checkpoint), not from the kept-set fit, or its
    fold solutions round differently below tol. Compared bitwise in the final checkpoints."""
    from divpred._checkpoint import read_purifier_checkpoint
    from divpred.calibration import N_FOLDS
    from divpred.purify import CHECKPOINT_VERSION

    # three classes with a fifth of the labels flipped: fold solutions that depend on their
    # start in the last bits (on mixed_data they happen to agree bitwise from any start)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(150, 4))
    y = np.argmax(X[:, :3] * 2.0 + rng.gumbel(size=(150, 3)), axis=1)
    y = np.where(rng.random(150) < 0.2, (y + 1) % 3, y)
    kwargs = dict(k=5, max_iter=6, record_calibration=True, stop="none", random_state=4)
    whole, cut = tmp_path / "whole.npz", tmp_path / "cut.npz"
    reference = Purifier(MultinomialLogit(alpha=1e-3), checkpoint=whole, **kwargs).fit(X, y)
    with monkeypatch.context() as m:
        _interrupting(m, after=3)
        with pytest.raises(KeyboardInterrupt):
            Purifier(MultinomialLogit(alpha=1e-3), checkpoint=cut, **kwargs).fit(X, y)
    resumed = Purifier(MultinomialLogit(alpha=1e-3), checkpoint=cut, **kwargs).fit(X, y)
    pd.testing.assert_frame_equal(resumed.history_, reference.history_)
    fp = reference._fingerprint(X, y, None, None, None)
    a = read_purifier_checkpoint(whole, CHECKPOINT_VERSION, fp)["fold_starts"]
    b = read_purifier_checkpoint(cut, CHECKPOINT_VERSION, fp)["fold_starts"]
    assert sorted(a) == sorted(b) == list(range(N_FOLDS))
    for f in a:
        np.testing.assert_array_equal(a[f], b[f])
