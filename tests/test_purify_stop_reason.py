"""Purifier.stopped_by_, stop_reason_ and removal_scores_: each cause on a constructed run."""

import numpy as np
import pytest

import divpred.purify as purify_module
from divpred import MultinomialLogit, Purifier, delta_scores
from divpred.stopping import knee_rule

from .test_purify import mixed_data


def test_rule_that_fires_is_named_with_its_iteration():
    X, y, _ = mixed_data(seed=7)
    pur = Purifier(k=5, max_iter=20, stop="knee").fit(X, y)
    fired = knee_rule(pur.history_["variance"].to_numpy())
    assert fired is not None and fired < 20  # the constructed curve has a knee
    assert pur.stopped_by_ == "knee"
    assert pur.stop_reason_.startswith(f"the knee rule fired at iteration {fired} (")
    assert "chose" not in pur.stop_reason_  # the knee rule keeps the iteration it fires at


def test_a_rule_that_chooses_an_earlier_iteration_says_both(monkeypatch):
    # a rule that returns 0 as soon as one iteration exists: fired at 1, chose 0 (0 is falsy:
    # the loop must still stop)
    monkeypatch.setattr(purify_module, "choose_iteration",
                        lambda history, rule, **kw: 0 if len(history) > 1 else None)
    X, y, _ = mixed_data(seed=1)
    pur = Purifier(k=5, max_iter=10, stop="relative").fit(X, y)
    assert pur.stop_iteration_ == 1 and pur.best_iteration_ == 0
    assert pur.stopped_by_ == "relative"
    assert pur.stop_reason_.startswith("the relative rule fired at iteration 1 (")
    assert pur.stop_reason_.endswith("and chose iteration 0")


def test_iteration_cap_before_the_rule():
    X, y, _ = mixed_data(seed=2)
    # two batches of 5 are fewer than the 20 points the agreement rule pools: it cannot fire
    pur = Purifier(k=5, max_iter=2, stop="agreement").fit(X, y)
    assert pur.stopped_by_ == "max_iter"
    assert pur.stop_reason_ == (
        "reached the iteration cap (max_iter=2) before the agreement rule fired"
    )
    assert pur.stop_iteration_ == pur.best_iteration_ == 2


def test_no_rule_runs_to_the_cap():
    X, y, _ = mixed_data(seed=3)
    pur = Purifier(k=5, max_iter=3, stop="none").fit(X, y)
    assert pur.stopped_by_ == "none"
    assert "max_iter=3" in pur.stop_reason_ and 'stop="none"' in pur.stop_reason_


def test_min_size():
    X, y, _ = mixed_data(seed=4, n1=30, n2=10)
    pur = Purifier(k=5, max_iter=10, min_size=30, stop="agreement").fit(X, y)
    assert pur.stop_iteration_ == 2  # 40 -> 35 -> 30; a third batch would leave 25 < 30
    assert pur.stopped_by_ == "min_size"
    assert pur.stop_reason_ == (
        "stopped at iteration 2: removing 5 more rows would leave fewer than min_size=30; "
        "the agreement rule had not fired"
    )


def test_single_class():
    X, y, _ = mixed_data(seed=5, n1=15, n2=5)
    y = np.zeros(20, int)
    y[:2] = 1
    # removing 19 of 20 rows leaves one row, hence one class, whatever the scores are
    pur = Purifier(MultinomialLogit(alpha=1e-2), k=19, max_iter=5, min_size=1, max_fraction=1.0,
                   stop="none").fit(X, y)
    assert pur.stop_iteration_ == 0
    assert pur.stopped_by_ == "single_class"
    assert pur.stop_reason_ == (
        "stopped at iteration 0: removing the next 19 rows would leave a single class"
    )


def _no_scoring(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a resumed run that had ended must not score again")

    for name in ("delta_scores", "scores_from_state"):
        monkeypatch.setattr(purify_module, name, fail)


@pytest.mark.parametrize("case", ["knee", "max_iter", "min_size", "single_class"])
def test_a_resumed_run_reports_the_same_cause_without_recomputing(tmp_path, monkeypatch, case):
    X, y, _ = mixed_data(seed=7)
    kwargs = {
        "knee": dict(k=5, max_iter=20, stop="knee"),
        "max_iter": dict(k=5, max_iter=2, stop="agreement"),
        "min_size": dict(k=5, max_iter=40, min_size=140, stop="none"),
        "single_class": dict(k=159, max_iter=5, min_size=1, max_fraction=1.0, stop="none"),
    }[case]
    ckpt = tmp_path / "c.npz"
    first = Purifier(checkpoint=ckpt, **kwargs).fit(X, y)
    assert first.stopped_by_ == case
    with monkeypatch.context() as m:
        _no_scoring(m)
        again = Purifier(checkpoint=ckpt, **kwargs).fit(X, y)
    assert (again.stopped_by_, again.stop_reason_) == (first.stopped_by_, first.stop_reason_)
    np.testing.assert_array_equal(again.removal_scores_, first.removal_scores_)
    if case in ("min_size", "single_class"):
        # ended by the data: a larger cap does not restart it
        with monkeypatch.context() as m:
            _no_scoring(m)
            more = Purifier(checkpoint=ckpt, **{**kwargs, "max_iter": 50}).fit(X, y)
        assert more.stopped_by_ == case


def test_a_run_ended_by_the_cap_goes_on_with_a_larger_cap(tmp_path):
    X, y, _ = mixed_data(seed=7)
    ckpt = tmp_path / "c.npz"
    Purifier(k=5, max_iter=2, checkpoint=ckpt, stop="none").fit(X, y)
    longer = Purifier(k=5, max_iter=4, checkpoint=ckpt, stop="none").fit(X, y)
    straight = Purifier(k=5, max_iter=4, stop="none").fit(X, y)
    assert longer.stop_iteration_ == 4 and longer.stopped_by_ == "none"
    np.testing.assert_array_equal(longer.removal_scores_, straight.removal_scores_)


def test_removal_scores_are_the_delta_scores_that_ranked_the_rows():
    X, y, _ = mixed_data(seed=0)
    model = MultinomialLogit(alpha=1e-3)
    pur = Purifier(model, method="exact", k=5, max_iter=3, stop="none").fit(X, y)
    assert pur.removal_scores_.shape == pur.removal_order_.shape == (15,)
    full = MultinomialLogit(alpha=1e-3).fit(X, y)
    exact = delta_scores(full, X, y, "exact")
    np.testing.assert_allclose(pur.removal_scores_[:5], exact[pur.removal_order_[:5]],
                               rtol=1e-10)
    assert np.all(pur.removal_scores_[:5] >= np.delete(exact, pur.removal_order_[:5]).max())
    # the second batch is scored on the kept rows after the first refit
    keep = np.ones(len(y), bool)
    keep[pur.removal_order_[:5]] = False
    refit = MultinomialLogit(alpha=1e-3).fit(X[keep], y[keep])
    second = delta_scores(refit, X[keep], y[keep], "exact")
    position = {row: i for i, row in enumerate(np.nonzero(keep)[0])}
    expected = second[[position[r] for r in pur.removal_order_[5:10]]]
    np.testing.assert_allclose(pur.removal_scores_[5:10], expected, rtol=1e-5)
