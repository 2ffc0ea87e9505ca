"""The estimators of benchmarks/bench_knee_guard.py: kept sets, the knee's sharpness, the two
cross-fitted comparisons and the decision read from a stranger row."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_knee_guard as kg  # noqa: E402
from _auto_cases import Case  # noqa: E402


def _history(variance, size):
    return pd.DataFrame({"variance": variance, "size": size})


def test_kept_rows_drop_the_first_removals():
    h = _history([3.0, 2.0, 1.0], [6, 4, 2])
    order = np.array([5, 0, 3, 1, 2, 4])
    np.testing.assert_array_equal(kg.kept_rows(h, order, 0), np.ones(6, dtype=bool))
    np.testing.assert_array_equal(kg.kept_rows(h, order, 1), [False, 1, 1, 1, 1, False])
    np.testing.assert_array_equal(kg.kept_rows(h, order, 2), [0, 0, 1, 0, 1, 0])


def test_knee_sharpness_by_hand():
    # 10 rows per iteration; slopes per row 0.1, 0.2, 0.1, 0.3, 0.2, 0.05 (s_1 .. s_6)
    v = np.cumsum([0.0, -1.0, -2.0, -1.0, -3.0, -2.0, -0.5]) + 20.0
    h = _history(v, 100 - 10 * np.arange(7))
    # steps of s before the knee at 6: +0.1, -0.1, +0.2, -0.1: median 0, MAD 0.1
    noise = 1.4826 * 0.1 / np.sqrt(2.0)
    # steepest from the crossing at 2 to the knee: max(s_2, s_3, s_4, s_5) = 0.3
    assert kg.knee_sharpness(h, 2, 6) == pytest.approx((0.3 - 0.05) / noise)


def test_comparisons_are_zero_for_an_empty_extension():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    X = rng.standard_normal((300, 4)) + 2.0 * np.eye(3, 4)[y]
    every = np.ones(300, dtype=bool)
    same = kg.crossfit_comparison(X, y, every, every)
    assert same["gain"] == 0.0 and same["gain_se"] == 0.0 and np.isnan(same["margin_ratio"])
    none = kg.heldout_descent_comparison(X, y, every, 0, 3)
    assert none["ho_gain"] == 0.0 and none["ho_acc_ref"] == none["ho_acc_ext"]
    with pytest.raises(ValueError, match="inside the reference"):
        kg.crossfit_comparison(X, y, every & (np.arange(300) < 200), every)


def test_removing_a_second_rule_raises_both_gains():
    """The control the guard rests on: on an SD-K two-rule mixture (70/30) a kept set without
    the second rule's rows predicts the observed labels of the rows it did not train on
    better: removed by hand (the curve-style comparison) and found by the descent itself on
    each fold's complement (the held-out comparison)."""
    from _auto_cases import build_sd

    d = build_sd(600, 0, n_rules=2, minor=0.3)
    every = np.ones(600, dtype=bool)
    oracle = kg.crossfit_comparison(d.X, d.y, every, ~d.mask)
    assert oracle["gain"] > 3 * oracle["gain_se"] > 0
    assert oracle["acc_cand"] == pytest.approx(oracle["acc_ref"] + oracle["gain"])
    fresh = kg.heldout_descent_comparison(d.X, d.y, every, 15, 6)
    assert fresh["ho_gain"] > 3 * fresh["ho_gain_se"] > 0


def test_stranger_decision_is_read_from_the_reference_row(tmp_path):
    case = Case("st-x-noise20-n10", "x", "noise", 10, 0.2, build=None, seed=3)
    reason = ("... had fallen to its null level by iteration 19 (median z over iterations "
              "18-20 at most the null median); the descent of V flattened at iteration 21 "
              "(knee_ratio=0.333); the knee chose iteration 21")
    (tmp_path / f"defaults-st-x-noise20-n10-s3-{kg.STRANGER_LIBRARY}.json").write_text(
        json.dumps({"iteration": 21, "stop_reason": reason}))
    d = kg.curve_decision(pd.DataFrame({"variance": [1.0]}), case, tmp_path)
    assert (d.iteration, d.test, d.crossing, d.knee) == (21, "knee", 19, 21)
