"""Purifier: the loop, the stopping rules, checkpoints and resumption."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from divpred import MultinomialLogit, Purifier, delta_scores, influence_variance
from divpred.stopping import choose_iteration, knee_rule, relative_change_rule, validation_rule

from .conftest import make_classification


def mixed_data(seed=0, n1=120, n2=40):
    """Two labelling rules on the same inputs: rows n1.. are the contaminating block."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n1 + n2, 3))
    w1, w2 = np.array([2.0, -1.0, 0.5]), np.array([-2.0, 1.0, 0.5])
    y = np.where(np.arange(n1 + n2) < n1, X @ w1 > 0, X @ w2 > 0).astype(int)
    return X, y, np.arange(n1 + n2) >= n1


def test_history_and_first_removal_match_delta_scores():
    X, y, contam = mixed_data()
    model = MultinomialLogit(alpha=1e-3)
    pur = Purifier(model, method="exact", k=5, max_iter=4, stop="none").fit(
        X, y, eval_set=(X[:120], y[:120]), contamination=contam
    )
    h = pur.history_
    assert list(h["iteration"]) == [0, 1, 2, 3, 4]
    assert list(h["size"]) == [160, 155, 150, 145, 140]
    full = MultinomialLogit(alpha=1e-3).fit(X, y)
    assert h["variance"][0] == pytest.approx(influence_variance(full, X, y), rel=1e-10)
    # later rows: V of the refit on the kept rows (the record's state is reused for scoring)
    last = MultinomialLogit(alpha=1e-3).fit(X[pur.keep_mask_], y[pur.keep_mask_])
    assert h["variance"].iloc[-1] == pytest.approx(
        influence_variance(last, X[pur.keep_mask_], y[pur.keep_mask_]), rel=1e-6
    )
    expected_top = np.argsort(-delta_scores(full, X, y, "exact"), kind="stable")[:5]
    assert h["removed"][1] == expected_top.tolist()
    assert pur.removal_order_[:5].tolist() == expected_top.tolist()
    # counts of contaminants agree with the removal order
    for it in range(5):
        assert h["contaminants_removed"][it] == contam[pur.removal_order_[: 5 * it]].sum()
    assert pur.best_iteration_ == 4  # stop="none": the last iteration
    assert pur.keep_mask_.sum() == 140
    assert not pur.keep_mask_[pur.removal_order_].any()
    # model_ is the fit on the kept rows
    refit = MultinomialLogit(alpha=1e-3).fit(X[pur.keep_mask_], y[pur.keep_mask_])
    np.testing.assert_allclose(pur.model_.theta_, refit.theta_, atol=1e-6)


def test_purification_removes_contaminants_and_lowers_variance():
    X, y, contam = mixed_data(seed=1)
    pur = Purifier(MultinomialLogit(alpha=1e-3), method="fast", k=5, max_iter=6, stop="none").fit(
        X, y, contamination=contam
    )
    assert pur.history_["variance"].iloc[-1] < pur.history_["variance"].iloc[0]
    # 25% of the rows are contaminants; the removed ones are mostly contaminants
    assert pur.contamination_precision(contam) > 0.6


def test_random_method_is_deterministic_given_random_state():
    X, y, _ = mixed_data(seed=2)
    a = Purifier(method="random", k=4, max_iter=3, random_state=0, stop="none").fit(X, y)
    b = Purifier(method="random", k=4, max_iter=3, random_state=0, stop="none").fit(X, y)
    c = Purifier(method="random", k=4, max_iter=3, random_state=1, stop="none").fit(X, y)
    np.testing.assert_array_equal(a.removal_order_, b.removal_order_)
    assert not np.array_equal(a.removal_order_, c.removal_order_)


def _interrupting(monkeypatch, after):
    import divpred.purify as purify_module

    calls = {"n": 0}

    def flaky(real):
        def scoring(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > after:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        return scoring

    # the first scoring after a (re)start builds its own state, later ones reuse the record's
    for name in ("delta_scores", "scores_from_state"):
        monkeypatch.setattr(purify_module, name, flaky(getattr(purify_module, name)))


def test_resume_after_interruption_gives_identical_history(tmp_path, monkeypatch):
    X, y, contam = mixed_data(seed=3)
    kwargs = dict(method="fast", k=5, max_iter=6, stop="none")
    reference = Purifier(MultinomialLogit(alpha=1e-3), **kwargs).fit(X, y, contamination=contam)
    ckpt = tmp_path / "run.ckpt.npz"
    with monkeypatch.context() as m:
        _interrupting(m, after=3)
        with pytest.raises(KeyboardInterrupt):
            Purifier(MultinomialLogit(alpha=1e-3), checkpoint=ckpt, **kwargs).fit(
                X, y, contamination=contam
            )
    assert ckpt.exists()
    resumed = Purifier(MultinomialLogit(alpha=1e-3), checkpoint=ckpt, **kwargs).fit(
        X, y, contamination=contam
    )
    pd.testing.assert_frame_equal(resumed.history_, reference.history_)
    np.testing.assert_array_equal(resumed.removal_order_, reference.removal_order_)
    assert np.isnan(resumed.seconds_[1])  # iterations 1-3 came from the checkpoint


# Two values of every Purifier parameter that the checkpoint fingerprint must cover (the
# checkpoint is written with the first, read with the second), and the parameters that may
# differ on resumption (they do not change the history).
FINGERPRINTED = {
    "model": (MultinomialLogit(alpha=1e-4), MultinomialLogit(alpha=1e-3)),
    "method": ("fast", "exact"),
    "k": (5, 4),
    "min_size": (None, 20),
    "stop": ("none", "knee"),
    "tol": (1e-2, 0.05),
    "knee_ratio": (1 / 3, 0.5),
    "patience": (5, 2),
    "validation_fraction": (0.2, 0.3),
    "agreement_threshold": (0.5, 0.6),
    "calibration_z": (3.0, 2.0),
    "record_calibration": (False, True),
    "random_state": (0, 1),
}
NOT_FINGERPRINTED = {"checkpoint", "progress", "max_iter", "max_fraction", "n_jobs"}


def test_every_purifier_parameter_is_covered_by_the_fingerprint_tests():
    # a new parameter must be added to one of the two lists (and so be tested)
    params = set(Purifier().get_params(deep=False))
    assert params == set(FINGERPRINTED) | NOT_FINGERPRINTED


def _purifier(tmp_path, **changed):
    """A Purifier with the first values of FINGERPRINTED, except ``changed``."""
    params = {name: first for name, (first, _) in FINGERPRINTED.items()}
    params.update({"max_iter": 1, "checkpoint": tmp_path / "c.npz", **changed})
    return Purifier(**params)


@pytest.mark.parametrize("name", sorted(FINGERPRINTED))
def test_checkpoint_with_one_other_parameter_is_rejected(tmp_path, name):
    X, y, _ = mixed_data(seed=4)
    _purifier(tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="other data or parameters"):
        _purifier(tmp_path, **{name: FINGERPRINTED[name][1]}).fit(X, y)


@pytest.mark.parametrize("change", ["X", "y", "eval_set", "contamination", "validation_set"])
def test_checkpoint_of_other_data_is_rejected(tmp_path, change):
    # each input changed alone, shapes unchanged: the fingerprint must read every one of them
    X, y, contam = mixed_data(seed=4)
    _purifier(tmp_path).fit(
        X, y, eval_set=(X[:50], y[:50]), contamination=contam, validation_set=(X[:40], y[:40])
    )
    inputs = {"X": X, "y": y, "eval_set": (X[:50], y[:50]), "contamination": contam,
              "validation_set": (X[:40], y[:40])}
    if change == "X":
        inputs["X"] = X.copy()
        inputs["X"][7, 1] += 1e-9
    elif change == "y":
        inputs["y"] = y.copy()
        inputs["y"][7] = 1 - y[7]
    elif change == "contamination":
        inputs["contamination"] = contam.copy()
        inputs["contamination"][0] = True
    else:
        Xe, ye = inputs[change]
        inputs[change] = (Xe, 1 - ye)
    with pytest.raises(ValueError, match="other data or parameters"):
        _purifier(tmp_path).fit(inputs.pop("X"), inputs.pop("y"), **inputs)


def test_checkpoint_resumes_with_other_unfingerprinted_parameters(tmp_path):
    # the control of the tests above: same data and fingerprinted parameters resume, even with
    # another max_iter (a longer run), n_jobs or progress bar
    X, y, _ = mixed_data(seed=4)
    first = _purifier(tmp_path).fit(X, y)
    longer = _purifier(tmp_path, max_iter=3, n_jobs=2, progress=False).fit(X, y)
    assert np.isnan(longer.seconds_[1])  # iteration 1 came from the checkpoint
    pd.testing.assert_frame_equal(longer.history_.iloc[:2], first.history_)
    reference = _purifier(tmp_path, max_iter=3, checkpoint=None).fit(X, y)
    pd.testing.assert_frame_equal(longer.history_, reference.history_)


def test_unreadable_checkpoint_is_rejected(tmp_path):
    X, y, _ = mixed_data(seed=4)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        Purifier(k=5, max_iter=1, checkpoint=tmp_path / "bad.npz", stop="none").fit(X, y)


def test_resume_after_sigkill(tmp_path):
    """Kill a real process mid-run; the resumed run equals an uninterrupted one."""
    X, y, _ = mixed_data(seed=5, n1=300, n2=100)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    ckpt = tmp_path / "ckpt.npz"
    script = textwrap.dedent(
        f"""
        import time, numpy as np
        import divpred.purify as pm
        from divpred import Purifier, MultinomialLogit
        real = pm.delta_scores
        def slow(*a, **k):
            time.sleep(0.3)  # leave time to be killed between checkpoints
            return real(*a, **k)
        pm.delta_scores = slow
        d = np.load({str(tmp_path / "data.npz")!r})
        Purifier(MultinomialLogit(alpha=1e-3), k=5, max_iter=30,
                 checkpoint={str(ckpt)!r}, stop="none").fit(d["X"], d["y"])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline:
        if ckpt.exists():
            with np.load(ckpt) as data:
                if data["order"].size >= 10:
                    break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with np.load(ckpt) as data:
        done = data["order"].size // 5
    assert 2 <= done < 30
    resumed = Purifier(MultinomialLogit(alpha=1e-3), k=5, max_iter=30, checkpoint=ckpt,
                       stop="none").fit(X, y)
    reference = Purifier(MultinomialLogit(alpha=1e-3), k=5, max_iter=30, stop="none").fit(X, y)
    pd.testing.assert_frame_equal(resumed.history_, reference.history_)


def test_validation_rule_holds_out_rows_and_never_removes_them():
    X, y, _ = mixed_data(seed=6)
    pur = Purifier(k=5, max_iter=8, stop="validation", patience=2, random_state=0).fit(X, y)
    assert "val_accuracy" in pur.history_
    held_out = ~pur.keep_mask_
    held_out[pur.removal_order_[: pur.best_iteration_ * 5]] = False
    assert held_out.sum() == 32  # 20% of 160
    assert not np.isin(pur.removal_order_, np.nonzero(held_out)[0]).any()
    acc = pur.history_["val_accuracy"].to_numpy()
    assert acc[pur.best_iteration_] == acc.max()


def test_stopping_rules_on_known_curves():
    v = np.array([10.0, 8.0, 6.5, 5.5, 5.2, 5.0, 4.95])
    # decreases: 2, 1.5, 1, 0.3, 0.2, 0.05
    assert knee_rule(v, ratio=1 / 3) == 4
    assert knee_rule(v, ratio=0.6) == 3
    assert knee_rule(np.array([10.0, 9.0, 7.0, 4.0, 3.5]), ratio=1 / 3) == 4
    assert relative_change_rule(v, tol=0.02) == 6
    assert relative_change_rule(v, tol=1e-4) is None
    # relative to the previous V (the paper's |dV| / V_{t-1}): 0.95 / 10 < 0.1 < 0.95 / 9.05
    assert relative_change_rule(np.array([10.0, 9.05]), tol=0.1) == 1
    assert validation_rule([0.5, 0.6, 0.7, 0.65, 0.6], patience=2) == 2
    assert validation_rule([0.5, 0.6, 0.7, 0.65], patience=2) is None
    assert knee_rule(np.array([1.0, 1.2, 0.5])) == 0


def test_knee_stop_ends_the_loop_early():
    X, y, _ = mixed_data(seed=7)
    pur = Purifier(k=5, max_iter=20, stop="knee").fit(X, y)
    chosen = knee_rule(pur.history_["variance"].to_numpy())
    assert pur.best_iteration_ == chosen
    assert pur.stop_iteration_ == chosen < 20


@pytest.mark.parametrize(
    "kwargs,match",
    [({"method": "x"}, "method"), ({"stop": "x"}, "stop"), ({"k": 0}, "k must"),
     ({"validation_fraction": 1.5}, "validation_fraction"),
     ({"agreement_threshold": 1.0}, "agreement_threshold")],
)
def test_bad_parameters(kwargs, match):
    X, y = make_classification(30, 2, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        Purifier(**kwargs).fit(X, y)


def test_bad_contamination_mask():
    X, y = make_classification(30, 2, 2, seed=0)
    with pytest.raises(ValueError, match="contamination"):
        Purifier(max_iter=1, stop="none").fit(X, y, contamination=np.zeros(5, bool))


def test_separable_rule_and_train_accuracy():
    from divpred.stopping import separable_rule

    assert separable_rule([0.5, 0.9, 1.0, 1.0]) == 2
    assert separable_rule([0.5, 0.9]) is None
    X, y, _ = mixed_data(seed=8)
    pur = Purifier(k=5, max_iter=15, stop="separable").fit(X, y)
    acc = pur.history_["train_accuracy"].to_numpy()
    model = MultinomialLogit().fit(X, y)
    assert acc[0] == pytest.approx(model.score(X, y))
    assert pur.best_iteration_ == separable_rule(acc) == pur.stop_iteration_


def test_loop_stops_before_emptying_a_class():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = np.zeros(40, int)
    y[:6] = 1  # a small class that purification would remove entirely
    X[:6] += 3.0
    y[6:9] = 1
    pur = Purifier(method="loss", k=5, max_iter=10, min_size=5, stop="none").fit(X, y)
    kept = pur.keep_mask_
    assert np.unique(y[kept]).size == 2


def test_outputs_have_normal_permissions(tmp_path):
    from divpred import _io

    old = os.umask(0o022)
    try:
        _io.write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*tmp"))


def test_a_vanishing_class_gives_a_consistent_model_and_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = 1 + (X[:, 0] > 0).astype(int)
    y[:6] = 0  # a tiny third class that purification removes
    ckpt = tmp_path / "c.npz"
    pur = Purifier(MultinomialLogit(alpha=1e-3), k=5, max_iter=4, checkpoint=ckpt,
                   stop="none").fit(X, y)
    kept = pur.keep_mask_
    assert not np.isin(0, y[kept])  # the class did vanish
    refit = MultinomialLogit(alpha=1e-3).fit(X[kept], y[kept])
    np.testing.assert_array_equal(pur.model_.classes_, refit.classes_)
    np.testing.assert_array_equal(pur.model_.predict(X), refit.predict(X))
    resumed = Purifier(MultinomialLogit(alpha=1e-3), k=5, max_iter=4, checkpoint=ckpt,
                       stop="none").fit(X, y)
    pd.testing.assert_frame_equal(resumed.history_, pur.history_)


def label_noise_data(seed, n=200, n_flipped=30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X @ np.array([1.5, -1.0, 0.5, 0.0]) > 0).astype(int)
    flipped = rng.choice(n, n_flipped, replace=False)
    y[flipped] = 1 - y[flipped]
    noisy = np.zeros(n, bool)
    noisy[flipped] = True
    return X, y, noisy


def test_agreement_rule_on_known_curve():
    from divpred.stopping import agreement_rule

    tens = [0, 10, 10, 10, 10, 10]
    # pooled over the last 20 points: (0.2+0.5)/2, (0.5+0.7)/2 = 0.6 > 0.5 at iteration 4
    assert agreement_rule([np.nan, 0.0, 0.2, 0.5, 0.7, 1.0], tens) == 4
    assert agreement_rule([np.nan, 0.0, 0.6, 0.5, 0.5, 0.5], tens) == 3  # (0.6 + 0.5) / 2
    assert agreement_rule([np.nan, 0.0, 0.2, 0.5, 0.7], tens[:5], threshold=0.3) == 3
    assert agreement_rule([np.nan, 1.0], [0, 10]) is None  # fewer than min_points so far
    assert agreement_rule([np.nan, 1.0], [0, 10], min_points=10) == 1
    # batches of 5: a single batch of 0.8 does not fire; four averaging 0.55 do
    assert agreement_rule([np.nan, 0.0, 0.2, 0.8, 0.4, 0.6, 0.4], [0] + [5] * 6) == 6
    assert agreement_rule([np.nan], [0]) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agreement_stop_on_label_noise(seed):
    """30 flipped labels, k = 5: the rule fires once the flips are gone.

    The rule fires at t when more than 10 of the last 20 removals (4 batches) are predicted
    right by the refit without them. A flipped label is predicted wrong (the refit follows the
    clean rule), so with the flips removed first (6 batches) the pooled agreement is at most
    1/4 at t = 7 and 1/2 at t = 8 (not > 1/2): the rule fires at t = 9 at the latest, once
    three clean batches follow, if the refit agrees with most clean removals. The control:
    random removal takes clean points (85% of the rows) the refit agrees with, so the rule
    fires as soon as 20 points are pooled (t = 4) with about 3 flips removed.
    """
    X, y, noisy = label_noise_data(seed)
    pur = Purifier(MultinomialLogit(alpha=1e-3), method="fast", k=5, max_iter=20,
                   stop="agreement").fit(X, y, contamination=noisy)
    h = pur.history_
    assert pur.best_iteration_ == pur.stop_iteration_ <= 9
    assert noisy[pur.removal_order_[: 5 * pur.best_iteration_]].sum() >= 27
    control = Purifier(MultinomialLogit(alpha=1e-3), method="random", k=5, max_iter=20,
                       stop="agreement", random_state=0).fit(X, y)
    assert control.best_iteration_ == 4
    assert noisy[control.removal_order_[:20]].sum() <= 8
    # the column is what the rule says: the refit of iteration t on the batch it lost
    keep = np.ones(len(y), bool)
    for t in range(1, len(h)):
        batch = np.asarray(h["removed"][t])
        keep[batch] = False
        refit = MultinomialLogit(alpha=1e-3).fit(X[keep], y[keep])
        agreement = np.mean(refit.predict(X[batch]) == y[batch])
        assert h["removed_agreement"][t] == pytest.approx(agreement)
    assert np.isnan(h["removed_agreement"][0])


def test_agreement_threshold_reaches_the_rule():
    # random removals are mostly clean points the refit agrees with (0.6-1.0 per batch): the
    # default threshold 0.5 fires at the first 20 pooled points, 0.9 only once a run of
    # batches is agreed with almost entirely; the loop must stop where the rule says
    X, y, _ = label_noise_data(0)
    runs = {}
    for threshold in (0.5, 0.9):
        pur = Purifier(MultinomialLogit(alpha=1e-3), method="random", k=5, max_iter=20,
                       stop="agreement", agreement_threshold=threshold, random_state=0).fit(X, y)
        assert pur.best_iteration_ == choose_iteration(pur.history_, "agreement",
                                                       threshold=threshold)
        runs[threshold] = pur.best_iteration_
    assert runs[0.5] == 4 < runs[0.9]
