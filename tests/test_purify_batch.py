"""k="adaptive": batches from the label-excess tail counts (divpred._batch), checked against an
independent computation from the recorded counts, the stopping granularity, resume, validation."""

import math

import numpy as np
import pytest
from sklearn.datasets import load_digits

from divpred import MultinomialLogit, Purifier
from divpred._batch import ADAPTIVE_CAP, ADAPTIVE_SHARE
from divpred._checkpoint import CheckpointError
from divpred.calibration import LEVELS, contamination_lower_bound, excess_z_from_counts
from divpred.stopping import knee_rule


def _digits_flipped(share=0.3, seed=0):
    """Digits 4 vs 8 with ``share`` of the labels swapped: a confident model, a large excess."""
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, [4, 8])
    X, y = X[keep] / 16.0, y[keep]
    rng = np.random.default_rng(seed)
    flip = rng.choice(y.size, size=round(share * y.size), replace=False)
    y[flip] = np.where(y[flip] == 4, 8, 4)
    return X, y


def _adaptive(**params):
    params = {"model": MultinomialLogit(alpha=1e-4), "method": "fast1", "k": "adaptive",
              "random_state": 0, **params}
    return Purifier(**params)


def _bound_by_hand(counts, N, z):
    """max(0, max_tau (count - N tau - z sqrt(N tau (1 - tau))) / (N (1 - tau)))."""
    best = 0.0  # the max with 0
    for c, tau in zip(counts, LEVELS, strict=True):
        best = max(best, (c - N * tau - z * math.sqrt(N * tau * (1 - tau))) / (N * (1 - tau)))
    return best


def test_contamination_bound_is_below_the_planted_share_and_close_when_contaminants_are_clear():
    rng = np.random.default_rng(0)
    N, pi = 20_000, 0.25
    n_bad = round(pi * N)
    # contaminants under a confident wrong prediction (u near 0), the rest calibrated
    u = np.concatenate([rng.uniform(0, 0.005, n_bad), rng.uniform(0, 1, N - n_bad)])
    counts = [int(np.sum(u < t)) for t in LEVELS]
    estimate = contamination_lower_bound(counts, N)
    assert estimate == pytest.approx(_bound_by_hand(counts, N, 0.0), rel=1e-12)
    assert abs(estimate - pi) < 0.01  # every contaminant below the smallest level: exact
    bound = contamination_lower_bound(counts, N, z=3.0)  # the lower confidence bound
    assert bound == pytest.approx(_bound_by_hand(counts, N, 3.0), rel=1e-12)
    assert pi - 0.02 < bound < pi
    # half of them only weakly contradicted (u spread over (0, 1)): it sees about half
    u[: n_bad // 2] = rng.uniform(0, 1, n_bad // 2)
    counts = [int(np.sum(u < t)) for t in LEVELS]
    assert pi / 2 - 0.01 < contamination_lower_bound(counts, N) < pi / 2 + 0.01
    # calibrated labels: the counts at their expectation give 0 (nothing beyond z sd)
    assert contamination_lower_bound([N * t for t in LEVELS], N) == 0.0
    assert contamination_lower_bound([N * t for t in LEVELS], N, z=0.0) == 0.0


def test_knee_per_removed_row_compares_batches_of_different_sizes():
    # V falls by 10 per row over a batch of 5 rows (50), then by 8 per row over 1 row (8):
    # per iteration the slope fell below a third of the steepest (8 < 50 / 3), per row not
    v = np.array([200.0, 150.0, 142.0, 134.0, 133.0])
    size = np.array([100, 95, 94, 93, 92])
    assert knee_rule(v, 1 / 3) == 2
    assert knee_rule(v, 1 / 3, size) == 4  # 1 per row < 10 / 3 at the last step
    # equal batches: the same as without sizes
    w = np.array([10.0, 7.0, 5.0, 4.5, 4.4])
    assert knee_rule(w, 1 / 3, np.array([50, 45, 40, 35, 30])) == knee_rule(w, 1 / 3)


def test_knee_refuses_sizes_that_do_not_match_the_curve():
    # a size array of another length was silently ignored before: the per-row slopes of an
    # adaptive run would then have been compared per iteration without a word
    v = np.array([200.0, 150.0, 142.0, 134.0, 133.0])
    with pytest.raises(ValueError, match="one per value of V"):
        knee_rule(v, 1 / 3, np.array([100, 95, 94, 93]))


def test_a_stale_estimate_counts_the_rows_removed_since_as_contamination_gone():
    """The statistic not evaluated at the last iterations (NaN / None, as a lazy schedule
    leaves it): the estimate of iteration s, minus the rows removed since."""
    from divpred._batch import adaptive_batch_size

    size = [1000, 990, 980, 970, 950, 930]
    counts = [[60, 150, 250]] * 4 + [None, [np.nan] * 3]
    N = 970
    left = _bound_by_hand(counts[3], N, 0.0) * N - (N - 930)
    assert left > 30  # the case this test is about: a batch above k_min = 10
    assert adaptive_batch_size(size, counts, 10, 50) == math.floor(left / 3) < 50
    assert adaptive_batch_size(size, counts, 10, 20) == 20  # the cap
    # within the probe window (less than 3% removed) the batch is k_min whatever the counts
    assert adaptive_batch_size(size[:3], counts[:3], 10, 50) == 10
    # nothing evaluated at all: k_min
    assert adaptive_batch_size(size, [None] * 6, 10, 50) == 10


@pytest.fixture(scope="module")
def adaptive_run():
    X, y = _digits_flipped()
    return X, y, _adaptive(max_iter=10).fit(X, y)


def test_batches_follow_the_recorded_tail_counts(adaptive_run):
    """Each batch recomputed from the history alone: k_t = min(5% n, max(1% n,
    floor(c pi_hat_t N_t))) after the probe window, 1% of n within it."""
    X, y, pur = adaptive_run
    h = pur.history_
    n = X.shape[0]
    k_min, k_max = math.ceil(0.01 * n), math.ceil(ADAPTIVE_CAP * n)
    assert pur.k_ == k_min
    expected = []
    for t in range(len(h) - 1):
        N = int(h["size"].iloc[t])
        counts = h["label_tail_counts"].iloc[t]
        z = excess_z_from_counts(counts, N)  # the counts are the ones z was computed from
        assert z == pytest.approx(h["label_excess_z"].iloc[t], abs=1e-12)
        window_done = t >= 2 and n - N >= 0.03 * n * (1 - 1e-12)
        if not window_done:
            expected.append(k_min)
            continue
        k = math.floor(ADAPTIVE_SHARE * max(0.0, _bound_by_hand(counts, N, 0.0)) * N)
        expected.append(min(k_max, max(k_min, k)))
    assert pur.batch_sizes_.tolist() == expected
    assert h["batch_size"].tolist() == [0, *expected]
    assert [len(r) for r in h["removed"]] == [0, *expected]
    assert max(expected) > k_min  # the schedule did adapt on this case
    assert pur.removal_order_.size == sum(expected)
    np.testing.assert_array_equal(n - h["size"].to_numpy(), np.cumsum([0, *expected]))


def test_adaptive_run_ends_at_the_granularity_of_k_auto():
    """Near the stop the remaining excess is small, so the batches are back at 1% of n and
    the chosen iteration's kept set is that of the rows removed up to it."""
    X, y = _digits_flipped()
    pur = _adaptive().fit(X, y)
    assert pur.stopped_by_ == "auto" and pur.best_iteration_ >= 5
    best = pur.best_iteration_
    assert np.all(pur.batch_sizes_[best - 2:] == pur.k_)
    assert pur.batch_sizes_.max() > pur.k_
    removed = pur.removal_order_[: pur.batch_sizes_[:best].sum()]
    np.testing.assert_array_equal(np.flatnonzero(~pur.keep_mask_), np.sort(removed))
    np.testing.assert_array_equal(pur.removed_rows(best), removed)


def test_adaptive_resume_is_identical(tmp_path, adaptive_run):
    X, y, ref = adaptive_run
    path = tmp_path / "ckpt.npz"
    _adaptive(max_iter=4, checkpoint=path).fit(X, y)
    got = _adaptive(max_iter=10, checkpoint=path).fit(X, y)
    assert got.batch_sizes_.tolist() == ref.batch_sizes_.tolist()
    np.testing.assert_array_equal(got.removal_order_, ref.removal_order_)
    cols = ["size", "variance", "label_excess_z", "batch_size"]
    np.testing.assert_array_equal(got.history_[cols].to_numpy(), ref.history_[cols].to_numpy())
    assert got.best_iteration_ == ref.best_iteration_


def test_a_checkpoint_whose_batches_disagree_with_its_removals_is_refused(tmp_path):
    import json

    from divpred import _io

    X, y = _digits_flipped()
    path = tmp_path / "ckpt.npz"
    _adaptive(max_iter=3, checkpoint=path).fit(X, y)
    data = dict(_io.read_npz(path, "checkpoint"))
    records = json.loads(str(data["records"]))
    records[2]["batch_size"] += 1
    data["records"] = np.array(json.dumps(records))
    _io.write_npz(path, **data)
    with pytest.raises(CheckpointError, match="removal order|removed rows|batch"):
        _adaptive(max_iter=5, checkpoint=path).fit(X, y)


def test_adaptive_needs_the_statistic_and_k_is_validated():
    X, y = _digits_flipped()
    with pytest.raises(ValueError, match="k='adaptive'.*stop='auto' or record_calibration"):
        _adaptive(stop="knee").fit(X, y)
    with pytest.raises(ValueError, match="'auto' or 'adaptive'; got 'adaptiv'"):
        _adaptive(k="adaptiv").fit(X, y)
    # with the statistic recorded it also serves another rule
    pur = _adaptive(stop="none", record_calibration=True, max_iter=3).fit(X, y)
    assert pur.batch_sizes_.tolist() == [pur.k_] * 3  # the probe window: 1% of n


def test_fixed_k_history_records_its_batches():
    X, y = _digits_flipped()
    pur = Purifier(MultinomialLogit(alpha=1e-4), method="fast1", k=7, max_iter=3,
                   stop="none").fit(X, y)
    assert pur.history_["batch_size"].tolist() == [0, 7, 7, 7]
    assert pur.batch_sizes_.tolist() == [7, 7, 7]
