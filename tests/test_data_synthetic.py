"""Synthetic SD-K data: equation (15), the paper's files, determinism and the separable variant.

What the paper's files contain (measured with this module; every statement is a test below):

* ``synthetic_train_pure.csv``: 1000 rows of distribution 1.
* ``synthetic_train_mix_2spec.csv``: rows 0-699 distribution 1 (identical to rows 0-699 of the
  pure file), rows 700-999 distribution 2.
* ``synthetic_train_mix_3spec.csv``: rows 0-699 distribution 1 (the same 700 rows again),
  700-849 distribution 2, 850-999 distribution 3.
* ``synthetic_test_dis1.csv``: 1000 rows of distribution 1.
* ``synthetic_mix12.csv``: rows 0-999 distribution 1, 1000-1999 distribution 2.
* ``synthetic_mix123.csv``: its first 2000 rows are ``synthetic_mix12.csv``; rows 2000-2999
  follow distribution 3.

In every block, 100% of the labels equal the rule of equation (15) *with the bins renamed*
``(R, D, B, N) -> (B, N, D, R)`` (``PAPER_FILE_DISTRIBUTIONS``), when ``C(x)`` is summed left to
right in float64. The bin labels printed in the paper agree with 0% of the rows (the renaming
has no fixed point). Many rows tie with a threshold in exact arithmetic; they are labelled by
float rounding of that sum, which other summation orders do not reproduce.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from divpred.data import (
    ALPHABET,
    PAPER_DISTRIBUTIONS,
    PAPER_FILE_DISTRIBUTIONS,
    PAPER_SD_FILES,
    SD_FEATURE_NAMES,
    SDData,
    SDDistribution,
    letter_codes,
    load_sd_csv,
    make_sd,
    one_hot_letters,
    random_sd_distribution,
    separable_letter_table,
)


def _blocks(name):
    start = 0
    for dist_id, n in PAPER_SD_FILES[name]:
        yield dist_id, slice(start, start + n)
        start += n


# --------------------------------------------------------------------------- equation (15)


def test_paper_parameters_as_printed():
    d1, d2, d3 = (PAPER_DISTRIBUTIONS[k] for k in (1, 2, 3))
    assert d1.letter_weights == {"R": 1.0, "D": -1.0, "B": -0.3, "N": 0.3}
    assert d2.letter_weights == {"R": -0.4, "D": 1.0, "B": 0.6, "N": -0.8}
    assert d3.letter_weights == {"R": 1.2, "D": 0.4, "B": -0.8, "N": -0.2}
    assert d1.feature_weights == (1, -1, 1, -1, 1, -1, 1, -1, 1, -1)
    assert d2.feature_weights == (0.5, 0.5, -1, 1, 0, -0.5, 1, -1, 0.5, -0.5)
    assert d3.feature_weights == (1, 0.5, 1, 1, 0.5, -0.5, -1, -1.5, -0.5, 1)
    assert (d1.thresholds, d2.thresholds, d3.thresholds) == (
        (-2.0, 0.0, 2.0),
        (-1.5, 0.0, 1.5),
        (-2.5, 0.0, 2.0),
    )
    for k in (1, 2, 3):
        assert PAPER_DISTRIBUTIONS[k].bin_labels == ("R", "D", "B", "N")
        assert PAPER_FILE_DISTRIBUTIONS[k].bin_labels == ("B", "N", "D", "R")
        assert PAPER_FILE_DISTRIBUTIONS[k].letter_weights == PAPER_DISTRIBUTIONS[k].letter_weights


def test_score_by_hand():
    d = PAPER_DISTRIBUTIONS[1]
    # q = (1, -1, 1, -1, ...), w(R)=1, w(D)=-1: "RDRDRDRDRD" scores 10, "DRDRDRDRDR" -10
    words = np.array([list("RDRDRDRDRD"), list("DRDRDRDRDR"), list("NNNNNNNNNN")])
    np.testing.assert_allclose(d.score(words), [10.0, -10.0, 0.0], atol=1e-12)
    assert d.label(words).tolist() == ["N", "R", "D"]  # C=0 is in (a1, a2] = (-2, 0]


@pytest.mark.parametrize("dist_id", [1, 2, 3])
def test_label_bins_follow_equation_15(dist_id):
    d = PAPER_DISTRIBUTIONS[dist_id]
    letters = d.sample_letters(3000, random_state=dist_id)
    c = d.score(letters)
    a1, a2, a3 = d.thresholds
    expected = np.select([c <= a1, c <= a2, c <= a3], ["R", "D", "B"], "N")
    np.testing.assert_array_equal(d.label(letters), expected)
    assert set(np.unique(d.label(letters))) == set(ALPHABET)


def test_score_equals_exact_sum_away_from_ties():
    d = PAPER_DISTRIBUTIONS[3]
    letters = d.sample_letters(200, random_state=1)
    exact = [
        float(
            sum(
                Fraction(str(q)) * Fraction(str(d.letter_weights[x]))
                for q, x in zip(d.feature_weights, row, strict=True)
            )
        )
        for row in letters
    ]
    np.testing.assert_allclose(d.score(letters), exact, atol=1e-12)


def test_file_convention_is_a_global_renaming():
    letters = make_sd(2000, 1, random_state=3).letters
    rename = dict(zip("RDBN", "BNDR", strict=True))
    for k in (1, 2, 3):
        eq = PAPER_DISTRIBUTIONS[k].label(letters)
        files = PAPER_FILE_DISTRIBUTIONS[k].label(letters)
        assert [rename[v] for v in eq] == files.tolist()


# --------------------------------------------------------------------------- paper files


@pytest.mark.parametrize("name", sorted(PAPER_SD_FILES))
def test_paper_files_follow_their_block_rules(paper_data, name):
    frame = pd.read_csv(paper_data / name)
    data = SDData.from_frame(frame)
    assert len(data) == sum(n for _, n in PAPER_SD_FILES[name])
    for dist_id, rows in _blocks(name):
        agree = PAPER_FILE_DISTRIBUTIONS[dist_id].label(data.letters[rows]) == data.y[rows]
        assert agree.mean() == 1.0, (name, dist_id, agree.mean())
        # the labels printed with equation (15) miss every row: the renaming has no fixed point
        printed = PAPER_DISTRIBUTIONS[dist_id].label(data.letters[rows]) == data.y[rows]
        assert printed.mean() == 0.0


@pytest.mark.parametrize("name", sorted(PAPER_SD_FILES))
def test_paper_file_blocks_are_not_explained_by_another_rule(paper_data, name):
    data = load_sd_csv(paper_data / name)
    for dist_id, rows in _blocks(name):
        for other in {1, 2, 3} - {dist_id}:
            agree = PAPER_FILE_DISTRIBUTIONS[other].label(data.letters[rows]) == data.y[rows]
            assert agree.mean() < 0.5, (name, dist_id, other, agree.mean())


def test_paper_file_relations(paper_data):
    def read(n):
        return pd.read_csv(paper_data / n)

    pure = read("synthetic_train_pure.csv")
    mix2 = read("synthetic_train_mix_2spec.csv")
    mix3 = read("synthetic_train_mix_3spec.csv")
    mix12 = read("synthetic_mix12.csv")
    mix123 = read("synthetic_mix123.csv")
    assert pure.iloc[:700].equals(mix2.iloc[:700])
    assert pure.iloc[:700].equals(mix3.iloc[:700])
    assert mix12.equals(mix123.iloc[:2000])
    assert not pure.iloc[700:].reset_index(drop=True).equals(mix2.iloc[700:].reset_index(drop=True))


def test_paper_ties_need_left_to_right_float_sum(paper_data):
    """Rows scoring exactly a1, a2 or a3 are labelled by float rounding of the sequential sum."""
    data = load_sd_csv(paper_data / "synthetic_train_pure.csv")
    d = PAPER_FILE_DISTRIBUTIONS[1]
    w = np.vectorize(lambda s: round(10 * d.letter_weights[s]))(data.letters)
    exact = w @ np.asarray(d.feature_weights, dtype=np.int64)  # 10 * C(x), exact integers
    ties = np.isin(exact, [round(10 * a) for a in d.thresholds])
    assert ties.sum() > 100  # ties are common, not a corner case
    exact_bins = np.searchsorted(10 * np.asarray(d.thresholds), exact, side="left")
    exact_labels = np.asarray(d.bin_labels)[exact_bins]
    assert np.all(exact_labels[~ties] == data.y[~ties])
    assert np.any(exact_labels[ties] != data.y[ties])  # exact arithmetic would not reproduce
    assert np.all(d.label(data.letters) == data.y)  # the sequential float64 sum does


def test_paper_letters_look_uniform(paper_data):
    data = load_sd_csv(paper_data / "synthetic_mix123.csv")
    freq = data.X.reshape(-1, 10, 4).mean(axis=(0, 1))
    np.testing.assert_allclose(freq, 0.25, atol=0.01)


# --------------------------------------------------------------------------- make_sd


def test_make_sd_shapes_and_encoding():
    data = make_sd((700, 300), (1, 2), random_state=0)
    assert data.letters.shape == (1000, 10)
    assert data.X.shape == (1000, 40) and data.X.dtype == np.float64
    assert data.y.shape == (1000,) and data.source.shape == (1000,)
    np.testing.assert_array_equal(data.X.sum(axis=1), 10.0)
    assert set(np.unique(data.X)) == {0.0, 1.0}
    np.testing.assert_array_equal(np.bincount(data.source), [700, 300])
    assert data.feature_names == list(SD_FEATURE_NAMES)
    assert data.feature_names[:5] == ["Q0_R", "Q0_D", "Q0_B", "Q0_N", "Q1_R"]
    # column Q{i}_{e} is one exactly where letter i is e
    for j, name in enumerate(data.feature_names):
        pos, letter = int(name[1 : name.index("_")]), name[-1]
        np.testing.assert_array_equal(data.X[:, j] == 1.0, data.letters[:, pos] == letter)


def test_make_sd_labels_follow_block_rules():
    dists = (1, 2, 3)
    data = make_sd((100, 200, 300), dists, random_state=5)
    assert data.distributions == tuple(PAPER_DISTRIBUTIONS[k] for k in dists)
    for b, k in enumerate(dists):
        rows = data.source == b
        np.testing.assert_array_equal(
            data.y[rows], PAPER_DISTRIBUTIONS[k].label(data.letters[rows])
        )


def test_make_sd_deterministic():
    a = make_sd((50, 60), (1, 3), random_state=42)
    b = make_sd((50, 60), (1, 3), random_state=42)
    c = make_sd((50, 60), (1, 3), random_state=43)
    np.testing.assert_array_equal(a.letters, b.letters)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.letters, c.letters)
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(
        make_sd(30, 1, random_state=g1).letters, make_sd(30, 1, random_state=g2).letters
    )


def test_make_sd_uniform_letters():
    data = make_sd((4000,), (2,), random_state=1)
    freq = data.X.reshape(-1, 10, 4).mean(axis=0)  # (position, letter)
    np.testing.assert_allclose(freq, 0.25, atol=0.03)


def test_make_sd_accepts_objects_and_scalars():
    d = PAPER_FILE_DISTRIBUTIONS[2]
    data = make_sd(20, d, random_state=0)
    assert data.distributions == (d,)
    np.testing.assert_array_equal(data.y, d.label(data.letters))
    empty_block = make_sd((0, 5), (1, 2), random_state=0)
    np.testing.assert_array_equal(empty_block.source, [1] * 5)


def test_to_frame_paper_layout_roundtrip(tmp_path):
    data = make_sd((30, 20), (1, 2), random_state=0)
    frame = data.to_frame()
    assert list(frame.columns) == [f"Q{i}" for i in range(11)]
    assert frame.shape == (50, 11)
    assert frame["Q10"].tolist() == data.y.tolist()
    assert "source" in data.to_frame(include_source=True).columns
    data.to_csv(tmp_path / "sd.csv")
    back = load_sd_csv(tmp_path / "sd.csv", source=data.source)
    np.testing.assert_array_equal(back.X, data.X)
    np.testing.assert_array_equal(back.y, data.y)
    np.testing.assert_array_equal(back.source, data.source)


def test_separable_blocks_are_predictable_from_x():
    sep = make_sd((500, 500), (1, 2), separable=True, random_state=0)
    mixed = make_sd((500, 500), (1, 2), separable=False, random_state=0)
    accs = []
    for data in (sep, mixed):
        idx = np.random.default_rng(0).permutation(1000)
        train, test = idx[:700], idx[700:]
        clf = LogisticRegression(max_iter=2000).fit(data.X[train], data.source[train])
        accs.append(clf.score(data.X[test], data.source[test]))
    assert accs[0] > 0.9
    assert accs[1] < 0.65  # the paper's uniform inputs do not reveal the block


def test_separable_letter_frequencies_differ_per_block():
    data = make_sd((3000, 3000, 3000), (1, 2, 3), separable=True, random_state=0)
    freqs = [data.X[data.source == b].reshape(-1, 10, 4).mean(axis=0) for b in range(3)]
    for b in range(3):
        np.testing.assert_allclose(freqs[b], separable_letter_table(b), atol=0.03)
    for b1 in range(3):
        for b2 in range(b1 + 1, 3):
            assert np.abs(freqs[b1] - freqs[b2]).max() > 0.5


def test_separable_table_patterns_distinct():
    tables = [separable_letter_table(b) for b in range(16)]
    for t in tables:
        np.testing.assert_allclose(t.sum(axis=1), 1.0)
    dominant = [t.argmax(axis=1) for t in tables]
    for i in range(16):
        for j in range(i + 1, 16):
            assert np.sum(dominant[i] != dominant[j]) >= 5
    with pytest.raises(ValueError, match="at most 16 blocks"):
        separable_letter_table(16)


def test_letter_probs_are_used():
    d = SDDistribution(
        PAPER_DISTRIBUTIONS[1].letter_weights,
        PAPER_DISTRIBUTIONS[1].feature_weights,
        PAPER_DISTRIBUTIONS[1].thresholds,
        letter_probs=(0.0, 0.0, 0.0, 1.0),
    )
    data = make_sd(50, d, separable=True, random_state=0)
    assert np.all(data.letters == "N")
    assert np.all(data.y == "D")  # C = 0.3 * sum(q) = 0 -> (a1, a2] -> D


def test_random_distribution_deterministic_and_balanced():
    a, b = random_sd_distribution(3), random_sd_distribution(3)
    assert a == b and hash(a) == hash(b)
    assert a != random_sd_distribution(4)
    labels = a.label(a.sample_letters(4000, random_state=0))
    counts = np.array([np.sum(labels == c) for c in ALPHABET]) / 4000
    np.testing.assert_allclose(counts, 0.25, atol=0.05)
    data = make_sd((100, 100), (a, random_sd_distribution(4)), random_state=0)
    np.testing.assert_array_equal(data.y[:100], a.label(data.letters[:100]))


def test_distribution_is_frozen_and_hashable():
    d = PAPER_DISTRIBUTIONS[1]
    with pytest.raises(AttributeError):
        d.thresholds = (0.0, 1.0, 2.0)
    assert len({d, PAPER_DISTRIBUTIONS[1], PAPER_DISTRIBUTIONS[2]}) == 2


def test_one_hot_letters_matches_make_sd():
    data = make_sd(25, 3, random_state=2)
    np.testing.assert_array_equal(one_hot_letters(data.letters), data.X)
    np.testing.assert_array_equal(letter_codes([list("RDBNRDBNRD")]), [[0, 1, 2, 3] * 2 + [0, 1]])


# --------------------------------------------------------------------------- errors


W1 = PAPER_DISTRIBUTIONS[1].letter_weights
Q1 = PAPER_DISTRIBUTIONS[1].feature_weights


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"letter_weights": {"R": 1, "D": 2, "B": 3}}, "missing \\['N'\\]"),
        ({"letter_weights": {**W1, "X": 1}}, "unexpected"),
        ({"letter_weights": [1, 2, 3, 4]}, "mapping"),
        ({"letter_weights": {**W1, "R": float("nan")}}, "finite"),
        ({"feature_weights": (1, 2, 3)}, "10 entries"),
        ({"feature_weights": "abcdefghij"}, "sequence"),
        ({"thresholds": (1.0, 0.0, 2.0)}, "strictly increasing"),
        ({"thresholds": (0.0, 1.0)}, "3 entries"),
        ({"letter_probs": (0.5, 0.5, 0.5, -0.5)}, "non-negative"),
        ({"letter_probs": (0.2, 0.2, 0.2, 0.2)}, "sum to 1"),
        ({"bin_labels": ("R", "R", "B", "N")}, "permutation"),
    ],
)
def test_distribution_rejects_bad_parameters(kwargs, match):
    params = {"letter_weights": W1, "feature_weights": Q1, "thresholds": (-2.0, 0.0, 2.0)}
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SDDistribution(**params)


@pytest.mark.parametrize(
    ("letters", "match"),
    [
        (np.array(list("RDBNRDBNRD")), "reshape"),
        (np.array([list("RDBNRDBNR")]), "shape"),
        (np.array([list("RDBNRDBNRX")]), "outside the alphabet.*'X'"),
        (np.zeros((2, 10)), "outside the alphabet"),
    ],
)
def test_label_rejects_bad_letters(letters, match):
    with pytest.raises(ValueError, match=match):
        PAPER_DISTRIBUTIONS[1].label(letters)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (((10, 10), (1,)), {}, "same length"),
        (((10,), (4,)), {}, "paper id"),
        (((10,), ("1",)), {}, "paper id"),
        (((-1,), (1,)), {}, "non-negative"),
        (((1.5,), (1,)), {}, "non-negative integer"),
        (((0, 0), (1, 2)), {}, "at least one row"),
        (("10", (1,)), {}, "sequence"),
        (((10,), (1,)), {"random_state": -3}, "non-negative"),
        (((10,), (1,)), {"random_state": "seed"}, "random_state"),
        (((10,), (1,)), {"separable": "yes"}, "bool"),
        (((1,) * 17, (1,) * 17), {"separable": True}, "at most 16"),
    ],
)
def test_make_sd_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_sd(*args, **kwargs)


def test_from_frame_rejects_bad_frames():
    frame = make_sd(5, 1, random_state=0).to_frame()
    with pytest.raises(ValueError, match="missing the SD column.*Q10"):
        SDData.from_frame(frame.drop(columns=["Q10"]))
    bad = frame.copy()
    bad.loc[0, "Q3"] = "Z"
    with pytest.raises(ValueError, match="'Z'"):
        SDData.from_frame(bad)
    bad = frame.copy()
    bad.loc[0, "Q10"] = "Y"
    with pytest.raises(ValueError, match="'Y'"):
        SDData.from_frame(bad)
    with pytest.raises(ValueError, match="source"):
        SDData.from_frame(frame, source=[0, 1])
    with pytest.raises(ValueError, match="DataFrame"):
        SDData.from_frame(frame.to_numpy())
    bad = frame.copy()
    bad.loc[1, "Q0"] = None
    with pytest.raises(ValueError, match="missing values"):
        SDData.from_frame(bad)
