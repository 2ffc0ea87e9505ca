"""Synthetic data SD-K of the paper (arXiv 2603.08649, Section 4, equation (15)).

A point is a word ``x`` of 10 letters over the alphabet ``E = (R, D, B, N)``. Distribution
``l`` labels it by the score

.. math::

    C(x) = \\sum_{i=1}^{10} q^l_i \\, w^l(x_i)

(``q`` the positional *feature weights*, ``w`` the *letter weights*) cut at three thresholds
``a1 < a2 < a3``: equation (15) gives R if ``C <= a1``, D if ``a1 < C <= a2``, B if
``a2 < C <= a3`` and N if ``C > a3``. A sample SD-K is the union of K blocks, block ``k``
holding ``N_k`` pairs ``(x, phi^k(x))`` with ``x ~ U(E^10)``.

Two facts about the paper's published CSV files (checked in ``tests/test_data_synthetic.py``):

* The files use the *same cut points* but name the four bins ``(B, N, D, R)`` instead of
  ``(R, D, B, N)``, for all three distributions. This is one global renaming of the classes, so
  any method that treats the classes symmetrically gives the same accuracies and variances on
  either convention.
  :data:`PAPER_FILE_DISTRIBUTIONS` holds the file convention, :data:`PAPER_DISTRIBUTIONS` the
  printed equation.
* The weights are multiples of 0.1, so ``C(x)`` often equals a threshold in exact arithmetic
  (about 15% of the rows for distribution 1). The files resolve these ties by float64 rounding
  of the left-to-right sum ``((q_1 w_1 + q_2 w_2) + ...)``. :meth:`SDDistribution.score` sums in
  the same order and reproduces every label of every file; a BLAS dot product, a right-to-left
  sum or exact decimal arithmetic disagree on up to about 4% of the rows of distribution 1.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from types import MappingProxyType

import numpy as np
import pandas as pd

from divpred._io import write_csv
from divpred.data._rng import RandomStateLike, check_generator

ALPHABET: tuple[str, str, str, str] = ("R", "D", "B", "N")
"""The letters of ``E``, in the order used for one-hot columns and ``letter_probs``."""

N_POSITIONS = 10
"""Number of letters in a word ``x``."""

EQUATION_BIN_LABELS: tuple[str, str, str, str] = ("R", "D", "B", "N")
"""Class of the bins ``C <= a1``, ``(a1, a2]``, ``(a2, a3]``, ``C > a3`` in equation (15)."""

PAPER_FILE_BIN_LABELS: tuple[str, str, str, str] = ("B", "N", "D", "R")
"""Class of the same four bins in the paper's CSV files."""

SD_COLUMNS: tuple[str, ...] = tuple(f"Q{i}" for i in range(N_POSITIONS + 1))
"""Columns of the paper's CSV layout: ``Q0..Q9`` the letters, ``Q10`` the label."""

SD_FEATURE_NAMES: tuple[str, ...] = tuple(f"Q{i}_{c}" for i in range(N_POSITIONS) for c in ALPHABET)
"""Names of the 40 one-hot columns: position-major, letters in :data:`ALPHABET` order."""

_ALPHABET_ARRAY = np.array(ALPHABET)
_SEPARABLE_DOMINANT_PROB = 0.7
_MAX_SEPARABLE_BLOCKS = 16


def _finite_floats(values, length: int, name: str) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(f"{name} must be a sequence of {length} numbers; got {values!r}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must contain numbers; got {values!r}") from None
    if arr.shape != (length,):
        raise ValueError(f"{name} must have {length} entries; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got {values!r}")
    return tuple(float(v) for v in arr)


def letter_codes(letters) -> np.ndarray:
    """Map letters to their index in :data:`ALPHABET`.

    Parameters
    ----------
    letters : array-like of str, shape (n, 10)
        Words over ``E``, one per row.

    Returns
    -------
    codes : ndarray of int, shape (n, 10)
        ``codes[j, i]`` is the index of ``letters[j, i]`` in ``("R", "D", "B", "N")``.
    """
    arr = np.asarray(letters)
    if arr.ndim != 2 or arr.shape[1] != N_POSITIONS:
        hint = " (use letters.reshape(1, -1) for a single word)" if arr.ndim == 1 else ""
        raise ValueError(
            f"letters must have shape (n_samples, {N_POSITIONS}); got {arr.shape}{hint}"
        )
    codes = np.full(arr.shape, -1, dtype=np.intp)
    if arr.dtype.kind in "UO":
        for j, c in enumerate(ALPHABET):
            codes[arr == c] = j
    bad = codes < 0
    if np.any(bad):
        unknown = sorted({repr(v) for v in arr[bad].tolist()})
        shown = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise ValueError(
            f"letters contain {int(bad.sum())} value(s) outside the alphabet {ALPHABET}: {shown}"
        )
    return codes


def one_hot_letters(letters) -> np.ndarray:
    """One-hot encode words over ``E``.

    Parameters
    ----------
    letters : array-like of str, shape (n, 10)

    Returns
    -------
    X : ndarray of float64, shape (n, 40)
        Column ``4 * i + j`` is 1 when position ``i`` holds ``ALPHABET[j]``; see
        :data:`SD_FEATURE_NAMES`. Every row has exactly 10 ones.
    """
    return _one_hot_codes(letter_codes(letters))


def _one_hot_codes(codes: np.ndarray) -> np.ndarray:
    n = codes.shape[0]
    X = np.zeros((n, N_POSITIONS * len(ALPHABET)), dtype=np.float64)
    cols = np.arange(N_POSITIONS) * len(ALPHABET) + codes
    X[np.arange(n)[:, None], cols] = 1.0
    return X


@dataclass(frozen=True)
class SDDistribution:
    """One labelling rule ``phi`` of equation (15) and the letter frequencies of its inputs.

    Parameters
    ----------
    letter_weights : mapping str -> float
        ``w(e)`` for each letter ``e`` of ``("R", "D", "B", "N")`` (all four keys required).
    feature_weights : sequence of 10 floats
        Positional weights ``q_1..q_10``.
    thresholds : sequence of 3 floats
        ``(a1, a2, a3)``, strictly increasing.
    letter_probs : sequence of 4 floats or None, default=None
        Probability of each letter (in :data:`ALPHABET` order) at every position when sampling
        inputs; ``None`` means uniform, as in the paper.
    bin_labels : sequence of 4 str, default=EQUATION_BIN_LABELS
        Class of the bins ``C <= a1``, ``a1 < C <= a2``, ``a2 < C <= a3``, ``C > a3``; a
        permutation of the alphabet. Use :data:`PAPER_FILE_BIN_LABELS` to match the paper's
        CSV files.
    """

    letter_weights: Mapping[str, float]
    feature_weights: tuple[float, ...]
    thresholds: tuple[float, float, float]
    letter_probs: tuple[float, float, float, float] | None = None
    bin_labels: tuple[str, str, str, str] = EQUATION_BIN_LABELS

    def __post_init__(self) -> None:
        lw = self.letter_weights
        if not isinstance(lw, Mapping):
            raise ValueError(
                f"letter_weights must be a mapping letter -> weight; got {type(lw).__name__}"
            )
        if set(lw) != set(ALPHABET):
            missing = [c for c in ALPHABET if c not in lw]
            extra = sorted(repr(k) for k in lw if k not in ALPHABET)
            raise ValueError(
                f"letter_weights must have exactly the keys {ALPHABET}; "
                f"missing {missing}, unexpected [{', '.join(extra)}]"
            )
        values = _finite_floats([lw[c] for c in ALPHABET], 4, "letter_weights")
        object.__setattr__(self, "letter_weights", dict(zip(ALPHABET, values, strict=True)))
        object.__setattr__(
            self,
            "feature_weights",
            _finite_floats(self.feature_weights, N_POSITIONS, "feature_weights"),
        )
        thr = _finite_floats(self.thresholds, 3, "thresholds")
        if not thr[0] < thr[1] < thr[2]:
            raise ValueError(f"thresholds must be strictly increasing (a1 < a2 < a3); got {thr}")
        object.__setattr__(self, "thresholds", thr)
        if self.letter_probs is not None:
            probs = _finite_floats(self.letter_probs, 4, "letter_probs")
            if min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-9:
                raise ValueError(
                    f"letter_probs must be non-negative and sum to 1; got {probs} "
                    f"(sum {sum(probs):.12g})"
                )
            object.__setattr__(self, "letter_probs", probs)
        labels = tuple(self.bin_labels) if not isinstance(self.bin_labels, str) else ()
        if sorted(labels) != sorted(ALPHABET):
            raise ValueError(
                f"bin_labels must be a permutation of {ALPHABET}; got {self.bin_labels!r}"
            )
        object.__setattr__(self, "bin_labels", labels)

    def __hash__(self) -> int:
        return hash(
            (
                tuple(self.letter_weights.items()),
                self.feature_weights,
                self.thresholds,
                self.letter_probs,
                self.bin_labels,
            )
        )

    @property
    def letter_weight_array(self) -> np.ndarray:
        """``w(e)`` as a float64 array of shape (4,), in :data:`ALPHABET` order."""
        return np.array([self.letter_weights[c] for c in ALPHABET], dtype=np.float64)

    def score(self, letters) -> np.ndarray:
        """Score ``C(x) = sum_i q_i w(x_i)`` of each word.

        The sum is accumulated left to right in float64, like the generator of the paper's
        files, so that scores landing on a threshold are labelled as in those files.

        Parameters
        ----------
        letters : array-like of str, shape (n, 10)

        Returns
        -------
        C : ndarray of float64, shape (n,)
        """
        return self._score_codes(letter_codes(letters))

    def label(self, letters) -> np.ndarray:
        """Label words by equation (15).

        Parameters
        ----------
        letters : array-like of str, shape (n, 10)

        Returns
        -------
        y : ndarray of str, shape (n,)
            ``bin_labels[k]`` where ``k`` is the number of thresholds strictly below ``C(x)``.
        """
        return self._label_codes(letter_codes(letters))

    def sample_letters(self, n: int, random_state: RandomStateLike = None) -> np.ndarray:
        """Draw ``n`` words with i.i.d. letters from ``letter_probs`` (uniform when None).

        Returns
        -------
        letters : ndarray of str, shape (n, 10)
        """
        n = _check_count(n, "n")
        table = (
            _uniform_table() if self.letter_probs is None else _constant_table(self.letter_probs)
        )
        return _ALPHABET_ARRAY[_sample_codes(n, table, check_generator(random_state))]

    def _score_codes(self, codes: np.ndarray) -> np.ndarray:
        w = self.letter_weight_array[codes]
        total = np.zeros(codes.shape[0], dtype=np.float64)
        for i, q in enumerate(self.feature_weights):
            total = total + q * w[:, i]
        return total

    def _label_codes(self, codes: np.ndarray) -> np.ndarray:
        bins = np.searchsorted(np.asarray(self.thresholds), self._score_codes(codes), side="left")
        return np.asarray(self.bin_labels)[bins]


def _paper(letter_weights, feature_weights, thresholds, bin_labels) -> SDDistribution:
    return SDDistribution(letter_weights, tuple(feature_weights), thresholds, None, bin_labels)


_PAPER_PARAMETERS = {
    1: (
        {"R": 1.0, "D": -1.0, "N": 0.3, "B": -0.3},
        (1, -1, 1, -1, 1, -1, 1, -1, 1, -1),
        (-2.0, 0.0, 2.0),
    ),
    2: (
        {"R": -0.4, "D": 1.0, "N": -0.8, "B": 0.6},
        (0.5, 0.5, -1, 1, 0, -0.5, 1, -1, 0.5, -0.5),
        (-1.5, 0.0, 1.5),
    ),
    3: (
        {"R": 1.2, "D": 0.4, "N": -0.2, "B": -0.8},
        (1, 0.5, 1, 1, 0.5, -0.5, -1, -1.5, -0.5, 1),
        (-2.5, 0.0, 2.0),
    ),
}

PAPER_DISTRIBUTIONS: Mapping[int, SDDistribution] = MappingProxyType(
    {k: _paper(*p, EQUATION_BIN_LABELS) for k, p in _PAPER_PARAMETERS.items()}
)
"""The paper's distributions 1, 2, 3 with the bin labels printed in equation (15)."""

PAPER_FILE_DISTRIBUTIONS: Mapping[int, SDDistribution] = MappingProxyType(
    {k: _paper(*p, PAPER_FILE_BIN_LABELS) for k, p in _PAPER_PARAMETERS.items()}
)
"""The same distributions with the bin labels found in the paper's CSV files."""

PAPER_SD_FILES: Mapping[str, tuple[tuple[int, int], ...]] = MappingProxyType(
    {
        "synthetic_train_pure.csv": ((1, 1000),),
        "synthetic_train_mix_2spec.csv": ((1, 700), (2, 300)),
        "synthetic_train_mix_3spec.csv": ((1, 700), (2, 150), (3, 150)),
        "synthetic_test_dis1.csv": ((1, 1000),),
        "synthetic_mix12.csv": ((1, 1000), (2, 1000)),
        "synthetic_mix123.csv": ((1, 1000), (2, 1000), (3, 1000)),
    }
)
"""Block structure of the paper's SD files: consecutive ``(distribution id, n_rows)`` blocks.

Every label of every block equals ``PAPER_FILE_DISTRIBUTIONS[id].label`` of its letters.
"""


@dataclass
class SDData:
    """A synthetic SD-K sample.

    Attributes
    ----------
    letters : ndarray of str, shape (n, 10)
        The words ``x``.
    X : ndarray of float64, shape (n, 40)
        One-hot encoding of ``letters`` (columns :data:`SD_FEATURE_NAMES`).
    y : ndarray of str, shape (n,)
        Labels in ``("R", "D", "B", "N")``.
    source : ndarray of int, shape (n,)
        0-based block of each row (index into ``distributions``); -1 when unknown.
    distributions : tuple of SDDistribution
        The rule of each block (empty when unknown).
    feature_names : list of str, length 40
    """

    letters: np.ndarray
    X: np.ndarray
    y: np.ndarray
    source: np.ndarray
    distributions: tuple[SDDistribution, ...] = ()
    feature_names: list[str] = field(default_factory=lambda: list(SD_FEATURE_NAMES))

    def __post_init__(self) -> None:
        n = np.shape(self.letters)[0] if np.ndim(self.letters) else -1
        shapes = {
            "letters": np.shape(self.letters),
            "X": np.shape(self.X),
            "y": np.shape(self.y),
            "source": np.shape(self.source),
        }
        expected = {
            "letters": (n, N_POSITIONS),
            "X": (n, N_POSITIONS * len(ALPHABET)),
            "y": (n,),
            "source": (n,),
        }
        if shapes != expected:
            raise ValueError(f"inconsistent SDData shapes: {shapes}; expected {expected}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to_frame(self, *, include_source: bool = False) -> pd.DataFrame:
        """The paper's CSV layout: letter columns ``Q0..Q9`` and label column ``Q10``.

        Parameters
        ----------
        include_source : bool, default=False
            Append the block id as a column ``source``.

        Returns
        -------
        pandas.DataFrame, shape (n, 11) (or (n, 12) with ``include_source``)
        """
        frame = pd.DataFrame(np.asarray(self.letters, dtype=object), columns=list(SD_COLUMNS[:-1]))
        frame[SD_COLUMNS[-1]] = np.asarray(self.y, dtype=object)
        if include_source:
            frame["source"] = np.asarray(self.source)
        return frame

    def to_csv(self, path: str | PathLike) -> None:
        """Write :meth:`to_frame` to ``path`` atomically (no index column)."""
        write_csv(path, self.to_frame())

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, source=None, distributions: Sequence[SDDistribution] = ()
    ) -> SDData:
        """Build an :class:`SDData` from a frame in the paper's layout (``Q0..Q9``, ``Q10``).

        Parameters
        ----------
        frame : pandas.DataFrame, shape (n, >= 11)
        source : array-like of int, shape (n,), optional
            Block of each row; -1 (unknown) when omitted.
        distributions : sequence of SDDistribution, optional

        Returns
        -------
        SDData
        """
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"frame must be a pandas DataFrame; got {type(frame).__name__}")
        missing = [c for c in SD_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(
                f"frame is missing the SD column(s) {missing}; found {list(frame.columns)}"
            )
        if frame[list(SD_COLUMNS)].isna().to_numpy().any():
            raise ValueError("frame contains missing values in the SD columns")
        letters = frame[list(SD_COLUMNS[:-1])].to_numpy(dtype=str)
        codes = letter_codes(letters)
        y = frame[SD_COLUMNS[-1]].to_numpy(dtype=str)
        letter_codes(y.reshape(-1, 1).repeat(N_POSITIONS, axis=1))  # labels must be letters
        n = letters.shape[0]
        if source is None:
            src = np.full(n, -1, dtype=np.int64)
        else:
            src = np.asarray(source)
            if src.shape != (n,) or src.dtype.kind not in "iu":
                raise ValueError(
                    f"source must be an integer array of shape ({n},); got {src.dtype} {src.shape}"
                )
            src = src.astype(np.int64)
        return cls(
            letters=_ALPHABET_ARRAY[codes],
            X=_one_hot_codes(codes),
            y=y.astype("<U1"),
            source=src,
            distributions=tuple(distributions),
        )


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value}")
    return int(value)


def _resolve_distribution(dist, position: int) -> SDDistribution:
    if isinstance(dist, SDDistribution):
        return dist
    if isinstance(dist, numbers.Integral) and not isinstance(dist, bool):
        if int(dist) in PAPER_DISTRIBUTIONS:
            return PAPER_DISTRIBUTIONS[int(dist)]
    raise ValueError(
        f"distributions[{position}] must be a paper id in {sorted(PAPER_DISTRIBUTIONS)} or an "
        f"SDDistribution; got {dist!r}"
    )


def _uniform_table() -> np.ndarray:
    return np.full((N_POSITIONS, len(ALPHABET)), 1.0 / len(ALPHABET))


def _constant_table(probs: Sequence[float]) -> np.ndarray:
    return np.tile(np.asarray(probs, dtype=np.float64), (N_POSITIONS, 1))


def separable_letter_table(block: int) -> np.ndarray:
    """Letter frequencies used by ``make_sd(..., separable=True)`` for a block.

    Block ``b`` favours, at position ``i``, the letter ``ALPHABET[(b % 4 + (b // 4) * i) % 4]``
    with probability 0.7 (the other three letters get 0.1 each). Blocks 0-3 thus favour R, D, B,
    N everywhere; blocks 4-15 cycle through the letters along the word. Any two of the 16
    patterns favour different letters at 5 or more of the 10 positions.

    Parameters
    ----------
    block : int
        Block index, ``0 <= block < 16``.

    Returns
    -------
    table : ndarray of float64, shape (10, 4)
        ``table[i, j]`` is the probability of ``ALPHABET[j]`` at position ``i``.
    """
    block = _check_count(block, "block")
    if block >= _MAX_SEPARABLE_BLOCKS:
        raise ValueError(
            f"separable letter frequencies exist for at most {_MAX_SEPARABLE_BLOCKS} blocks; got "
            f"block {block}. Give the distributions their own letter_probs instead."
        )
    k = len(ALPHABET)
    rest = (1.0 - _SEPARABLE_DOMINANT_PROB) / (k - 1)
    table = np.full((N_POSITIONS, k), rest)
    dominant = (block % k + (block // k) * np.arange(N_POSITIONS)) % k
    table[np.arange(N_POSITIONS), dominant] = _SEPARABLE_DOMINANT_PROB
    return table


def _sample_codes(n: int, table: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF draw of letter codes, shape (n, 10), from per-position probabilities."""
    cdf = np.cumsum(table, axis=1)[:, :-1]  # (10, 3)
    u = rng.random((n, N_POSITIONS))
    return (u[:, :, None] >= cdf[None, :, :]).sum(axis=2).astype(np.intp)


def make_sd(
    sizes: Sequence[int] | int = (700, 300),
    distributions: Sequence[int | SDDistribution] | int | SDDistribution = (1, 2),
    *,
    separable: bool = False,
    random_state: RandomStateLike = None,
) -> SDData:
    """Generate synthetic data SD-K: consecutive blocks, each labelled by its own rule.

    Parameters
    ----------
    sizes : sequence of int or int, default=(700, 300)
        ``N_k``, the number of rows of each block (zero allowed, total at least 1).
    distributions : sequence of (int or SDDistribution), or one of them, default=(1, 2)
        The rule of each block: a paper id in ``{1, 2, 3}`` (from :data:`PAPER_DISTRIBUTIONS`,
        equation (15) labels) or an :class:`SDDistribution` (e.g. from
        :data:`PAPER_FILE_DISTRIBUTIONS` or :func:`random_sd_distribution`).
    separable : bool, default=False
        ``False``: inputs follow each distribution's ``letter_probs`` (uniform when None, the
        paper's setting), so blocks overlap in input space. ``True``: blocks whose distribution
        has no ``letter_probs`` draw letters from :func:`separable_letter_table` of their block
        index instead, so the block of a row is predictable from ``x`` alone.
    random_state : None, int, Generator or RandomState, default=None
        Seed; the same seed gives the same data.

    Returns
    -------
    SDData
        ``n = sum(sizes)`` rows, block 0 first; ``X`` has shape (n, 40).
    """
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    if isinstance(distributions, SDDistribution | numbers.Integral):
        distributions = (distributions,)
    if isinstance(sizes, str) or not isinstance(sizes, Sequence | np.ndarray):
        raise ValueError(f"sizes must be a sequence of non-negative integers; got {sizes!r}")
    if isinstance(distributions, str) or not isinstance(distributions, Sequence | np.ndarray):
        raise ValueError(f"distributions must be a sequence; got {distributions!r}")
    counts = [_check_count(s, f"sizes[{i}]") for i, s in enumerate(sizes)]
    dists = tuple(_resolve_distribution(d, i) for i, d in enumerate(distributions))
    if len(counts) != len(dists):
        raise ValueError(
            f"sizes and distributions must have the same length; got {len(counts)} sizes and "
            f"{len(dists)} distributions"
        )
    if sum(counts) == 0:
        raise ValueError(f"make_sd needs at least one row; sizes are {counts}")
    if not isinstance(separable, bool | np.bool_):
        raise ValueError(f"separable must be a bool; got {separable!r}")
    rng = check_generator(random_state)

    codes_blocks, y_blocks = [], []
    for b, (n, dist) in enumerate(zip(counts, dists, strict=True)):
        if dist.letter_probs is not None:
            table = _constant_table(dist.letter_probs)
        elif separable:
            table = separable_letter_table(b)
        else:
            table = _uniform_table()
        codes = _sample_codes(n, table, rng)
        codes_blocks.append(codes)
        y_blocks.append(dist._label_codes(codes))
    codes = np.concatenate(codes_blocks, axis=0)
    return SDData(
        letters=_ALPHABET_ARRAY[codes],
        X=_one_hot_codes(codes),
        y=np.concatenate(y_blocks).astype("<U1"),
        source=np.repeat(np.arange(len(counts), dtype=np.int64), counts),
        distributions=dists,
    )


def random_sd_distribution(
    random_state: RandomStateLike = None,
    *,
    letter_probs: Sequence[float] | None = None,
    bin_labels: Sequence[str] = EQUATION_BIN_LABELS,
) -> SDDistribution:
    """Draw a new SD rule with roughly balanced classes.

    Letter weights are uniform on [-1.2, 1.2] and feature weights uniform on [-1.5, 1.5] (the
    ranges of the paper's three rules). The thresholds are midpoints between consecutive order
    statistics at the quartiles of ``C(x)`` over 4096 inputs drawn from ``letter_probs``, so each
    class gets about a quarter of the inputs.

    Parameters
    ----------
    random_state : None, int, Generator or RandomState, default=None
    letter_probs : sequence of 4 floats or None, default=None
        Stored on the result and used for the thresholds; None means uniform.
    bin_labels : sequence of 4 str, default=EQUATION_BIN_LABELS

    Returns
    -------
    SDDistribution
    """
    rng = check_generator(random_state)
    for _ in range(100):
        letter_weights = dict(zip(ALPHABET, rng.uniform(-1.2, 1.2, len(ALPHABET)), strict=True))
        feature_weights = tuple(rng.uniform(-1.5, 1.5, N_POSITIONS))
        probe = SDDistribution(
            letter_weights, feature_weights, (-1.0, 0.0, 1.0), letter_probs, tuple(bin_labels)
        )
        m = 4096
        scores = np.sort(probe.score(probe.sample_letters(m, rng)))
        cuts = [m // 4, m // 2, 3 * m // 4]
        thresholds = tuple(float((scores[k - 1] + scores[k]) / 2.0) for k in cuts)
        if thresholds[0] < thresholds[1] < thresholds[2]:
            return SDDistribution(
                probe.letter_weights, feature_weights, thresholds, letter_probs, probe.bin_labels
            )
    raise RuntimeError("could not draw a non-degenerate SD distribution")  # pragma: no cover
