"""The lazy schedule of z under stop="auto" (divpred._calibration_schedule): the same stop and
the same choice as with z at every iteration, fewer z."""

import numpy as np
import pandas as pd
import pytest

from divpred import MultinomialLogit, Purifier
from divpred import _calibration_schedule as sc
from divpred.stopping import _calibrated, auto_decision, null_median_excess_z

from .test_calibration_chord import _digits_noisy
from .test_purify import _interrupting

N0, K = 500, 5
SIZE = N0 - K * np.arange(60)  # k = 1% of n: the probe window is iterations 0..3


def _z(excess, size=SIZE):
    """z whose excess over the null median is ``excess`` (e_t = z_t - m(n_t))."""
    return np.array([e + null_median_excess_z(int(n)) for e, n in zip(excess, size,
                                                                         strict=False)])


def _dense(z, V, size):
    """The auto loop with z at every iteration, written out: (chosen, stop)."""
    for T in range(len(z)):
        d = auto_decision(z[: T + 1], V[: T + 1], size[: T + 1])
        if d.iteration is not None:
            return d.iteration, T
    return auto_decision(z, V, size[: len(z)], final=True).iteration, len(z) - 1


def _knee_at(t, length=60):
    """V falling by 10 per iteration to t, then by 0.1: the knee of V is at t."""
    return np.concatenate([100.0 - 10.0 * np.arange(t), 100.0 - 10.0 * t
                           - 0.1 * np.arange(1, length + 1)])[:length]


HIGH = [30.0] * 4  # the probe window: a persistent excess


@pytest.mark.parametrize("excess", [
    HIGH + list(np.linspace(29, -1, 30)) + [-1.0] * 20,  # slow fall
    [40.0] * 4 + list(40.0 - 5.9 * np.arange(1, 9)) + [-3.0] * 30,  # falls 5.9 per iteration
    HIGH + list(np.linspace(25, 0.5, 10)) + [0.4 * (-1) ** t for t in range(40)],  # oscillates
    HIGH + [2.0] * 10 + [-1.0] + [2.0] * 10 + [-1.0] * 30,  # one low value, then crossed
    HIGH + [3.0] * 50,  # never calibrated: the caps' fallback, the last iteration
    [1.0, 9.0, 1.0, 1.0] + [-1.0] * 50,  # no persistent excess: iteration 0
    [4.0] * 4 + [0.0, -0.0, 5.0, 0.0] + [5.0] * 46,  # e exactly 0 counts as at the null level
])
@pytest.mark.parametrize("knee", [2, 20])
def test_lazy_replay_chooses_what_every_iteration_chooses(excess, knee):
    z = _z(excess)
    V = _knee_at(knee, length=len(z))
    chosen, stop, evaluated = sc.replay(z, V, SIZE[: len(z)])
    assert (chosen, stop) == _dense(z, V, SIZE)
    assert set(evaluated) <= set(range(stop + 1))
    assert len(evaluated) == len(set(evaluated))  # each z at most once


def test_lazy_replay_skips_where_the_bound_excludes_the_null_level():
    excess = HIGH + list(np.linspace(60, 1, 40)) + [-1.0] * 10
    z, V = _z(excess), _knee_at(2)
    chosen, stop, evaluated = sc.replay(z, V, SIZE[: len(z)])
    assert (chosen, stop) == _dense(z, V, SIZE)
    assert len(evaluated) < stop + 1 - 15  # most of the slow fall is skipped
    e = np.asarray(excess)
    for t in set(range(stop + 1)) - set(evaluated):
        assert e[t] > 0  # a skipped iteration is never one the crossing test reads as low


def test_skipped_neighbours_would_fool_the_test_without_the_closure():
    """The crossing test takes the median over the *evaluated* neighbours: with the two
    iterations after a low value skipped, the next low value becomes its neighbour and the
    test fires where z everywhere does not. The schedule evaluates those neighbours."""
    excess = [13.0] * 4 + [12.0, 6.0, -1.0, 2.0, 3.0, -1.0, -1.0] + [-1.0] * 20
    z, V = _z(excess), _knee_at(2)
    assert _calibrated(z, SIZE[: len(z)]) == 9  # with z everywhere: at 9 (e_9 = e_10 = -1)
    naive = z.copy()
    naive[[7, 8]] = np.nan
    assert _calibrated(naive, SIZE[: len(z)]) == 6  # e_6 with e_9 as its neighbour
    chosen, stop, evaluated = sc.replay(z, V, SIZE[: len(z)])
    assert {7, 8} <= set(evaluated)
    assert (chosen, stop) == _dense(z, V, SIZE) == (9, 10)


def test_a_violated_bound_found_by_the_closure_cuts_the_run_back():
    """e falls by 31 in one skipped iteration: the stride lands at 8, the closure fills 7..4
    and shows that z everywhere decided at 6 (crossing at 5): the lazy run stops there too."""
    excess = HIGH + [30.0] + [-1.0] * 40
    z, V = _z(excess), _knee_at(2)
    assert _dense(z, V, SIZE) == (5, 6)
    chosen, stop, evaluated = sc.replay(z, V, SIZE[: len(z)])
    assert (chosen, stop) == (5, 6)
    assert 8 in evaluated  # the stride went past the every-iteration stop


@pytest.mark.parametrize("length, expected", [(3, None), (7, None), (8, 6), (20, 6)])
def test_earlier_decision_is_the_dense_stop_before_the_last_record(length, expected):
    """The purifiers' cut-back point from records against the every-iteration loop written
    out (``_dense``: it stops at 6 on this curve): that stop when the history goes past it,
    None when the history ends at it or has not reached it."""
    excess = HIGH + [30.0] + [-1.0] * 40
    z, V = _z(excess), _knee_at(2)
    assert _dense(z, V, SIZE)[1] == 6
    records = [{"label_excess_z": z[t], "variance": V[t], "size": int(SIZE[t])}
               for t in range(length)]
    assert sc.earlier_decision(records) == expected


def test_a_dip_inside_a_skipped_stretch_is_the_documented_miss():
    """The schedule's one assumption: e falling by more than the bound and recovering inside
    a skipped stretch is not seen (here the every-iteration rule stops at 6, the lazy at 41)."""
    excess = HIGH + [30.0, -1.0, -1.0, 30.0] + list(np.linspace(29, 0.5, 30)) + [-1.0] * 10
    z, V = _z(excess), _knee_at(2)
    assert _dense(z, V, SIZE)[0] == 5
    assert sc.replay(z, V, SIZE[: len(z)])[0] > 30


def test_random_curves_within_the_bound_give_the_dense_choice():
    """Property: whenever e falls by less than E_FALL per unit, lazy == every iteration, also
    with a batch size that varies between iterations (a batch of 3% counts as 3 units)."""
    rng = np.random.default_rng(7)
    for _ in range(150):
        T = int(rng.integers(8, 60))
        batches = rng.choice([2, 5, 5, 5, 15], size=T - 1)
        size = N0 - np.concatenate([[0], np.cumsum(batches)])
        units = sc.fall_units(size)
        start = rng.uniform(-2, 40)
        steps = rng.uniform(-0.99 * sc.E_FALL, 0.5 * sc.E_FALL, size=T - 1) * np.diff(units)
        excess = np.concatenate([[start], start + np.cumsum(steps)])
        if rng.random() < 0.3:  # then noise around the null level, reached within the bound
            for t in range(T // 2, T):
                pull = -0.7 * excess[t - 1] + rng.uniform(-0.6, 0.6)
                excess[t] = excess[t - 1] + max(pull, -0.99 * sc.E_FALL * (units[t] - units[t - 1]))
        z, V = _z(excess, size), _knee_at(int(rng.integers(2, 30)), T)
        chosen, stop, _ = sc.replay(z, V, size)
        assert (chosen, stop) == _dense(z, V, size)


def test_fall_units_count_large_batches_as_several_iterations():
    np.testing.assert_allclose(sc.fall_units([1000, 990, 950, 945]), [0, 1, 5, 6])


# ------------------------------------------------------------------------- the Purifier
def _runs(**kwargs):
    X, y = _digits_noisy()
    full = Purifier(MultinomialLogit(alpha=1e-3), record_calibration=True, **kwargs).fit(X, y)
    lazy = Purifier(MultinomialLogit(alpha=1e-3), **kwargs).fit(X, y)
    return X, y, full, lazy


def _assert_same_run(lazy, full):
    assert (lazy.best_iteration_, lazy.stop_iteration_, lazy.stopped_by_) == \
        (full.best_iteration_, full.stop_iteration_, full.stopped_by_)
    assert lazy.stop_reason_ == full.stop_reason_
    np.testing.assert_array_equal(lazy.removal_order_, full.removal_order_)
    z_lazy = lazy.history_["label_excess_z"].to_numpy()
    seen = ~np.isnan(z_lazy)
    np.testing.assert_array_equal(z_lazy[seen], full.history_["label_excess_z"][seen])
    # the tail counts behind z: the same where z was evaluated, None where it was skipped
    counts = lazy.history_["label_tail_counts"]
    assert counts[seen].tolist() == full.history_["label_tail_counts"][seen].tolist()
    assert counts[~seen].isna().all()
    pd.testing.assert_frame_equal(
        lazy.history_.drop(columns=["label_excess_z", "label_tail_counts"]),
        full.history_.drop(columns=["label_excess_z", "label_tail_counts"]))
    return seen


def test_auto_run_is_the_every_iteration_run_with_fewer_z(tmp_path, monkeypatch):
    """Lazy (stop="auto") against record_calibration=True: the same rows, stop and choice, z
    equal wherever evaluated (the past iterations' z from their stored fits); a killed lazy
    run resumes to the identical history."""
    kwargs = dict(k=3, random_state=4)
    X, y, full, lazy = _runs(**kwargs)
    assert not full.history_["label_excess_z"].isna().any()  # record_calibration: every z
    seen = _assert_same_run(lazy, full)
    assert 3 <= (~seen).sum()
    ckpt = tmp_path / "lazy.ckpt.npz"
    with monkeypatch.context() as m:
        _interrupting(m, after=8)  # after some skipped iterations
        with pytest.raises(KeyboardInterrupt):
            Purifier(MultinomialLogit(alpha=1e-3), checkpoint=ckpt, **kwargs).fit(X, y)
    resumed = Purifier(MultinomialLogit(alpha=1e-3), checkpoint=ckpt, **kwargs).fit(X, y)
    pd.testing.assert_frame_equal(resumed.history_, lazy.history_)
    np.testing.assert_array_equal(resumed.removal_order_, lazy.removal_order_)
    assert resumed.stop_reason_ == lazy.stop_reason_


def test_the_purifier_cuts_back_to_where_z_everywhere_stopped(monkeypatch):
    """A bound too small for this curve (E_FALL = 0.3): the stride passes the every-iteration
    stop, the closure finds it and the run is cut back to it, identical to the dense run."""
    import divpred.purify as purify_module

    cuts = []
    real = purify_module.Purifier._cut_back

    def spy(self, records, *args):
        before = len(records)
        out = real(self, records, *args)
        cuts.append((before - 1, len(records) - 1))
        return out

    monkeypatch.setattr(sc, "E_FALL", 0.3)
    monkeypatch.setattr(purify_module.Purifier, "_cut_back", spy)
    _, _, full, lazy = _runs(k=5, random_state=4)
    assert cuts and cuts[-1][1] < cuts[-1][0]  # the run went past the stop and was cut
    _assert_same_run(lazy, full)
