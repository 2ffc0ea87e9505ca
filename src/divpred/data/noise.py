"""Label noise: flip an exact number of labels, uniformly or to a fixed partner class.

The paper's EMNIST experiment mislabels a fraction ``r`` of the training points; the flipped
points form the second "distribution" that purification should remove. :func:`flip_labels`
returns the mask of flipped points so that experiments can score what was removed.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from divpred._validation import check_labels
from divpred.data._rng import RandomStateLike, check_generator


def _class_positions(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of each label of ``y`` in ``classes``; ValueError for labels not in ``classes``."""
    try:
        order = np.argsort(classes, kind="stable")
        pos = np.searchsorted(classes, y, sorter=order)
    except TypeError as exc:
        raise ValueError(f"labels and classes cannot be compared ({exc})") from None
    pos = np.clip(pos, 0, classes.shape[0] - 1)
    idx = order[pos]
    found = classes[idx] == y
    if not np.all(found):
        missing = sorted({repr(v) for v in y[~found].tolist()})
        raise ValueError(
            f"y contains label(s) not in classes: {', '.join(missing[:10])}; "
            f"classes are {classes.tolist()}"
        )
    return idx


def _check_classes(y: np.ndarray, classes) -> np.ndarray:
    if classes is None:
        arr = np.unique(y)
    else:
        if isinstance(classes, str) or not isinstance(classes, Sequence | np.ndarray):
            raise ValueError(f"classes must be a sequence of labels; got {classes!r}")
        arr = np.asarray(classes)
        if arr.ndim != 1:
            raise ValueError(f"classes must be 1-dimensional; got shape {arr.shape}")
        if np.unique(arr).shape[0] != arr.shape[0]:
            raise ValueError(f"classes contains duplicates: {arr.tolist()}")
    if arr.shape[0] < 2:
        raise ValueError(
            f"flipping labels needs at least 2 classes; got {arr.tolist()}"
            + (" (pass classes= to name the others)" if classes is None else "")
        )
    return arr


def _pair_targets(classes: np.ndarray, pairs) -> np.ndarray:
    """For each class index, the index of its partner class."""
    k = classes.shape[0]
    if pairs is None:
        return (np.arange(k) + 1) % k
    if not isinstance(pairs, Mapping):
        raise ValueError(f"pairs must be a mapping class -> partner class; got {pairs!r}")
    known = {c: i for i, c in enumerate(classes.tolist())}
    targets = np.empty(k, dtype=np.intp)
    for i, c in enumerate(classes.tolist()):
        if c not in pairs:
            raise ValueError(
                f"pairs has no partner for class {c!r}; it must map every class of "
                f"{classes.tolist()}"
            )
        partner = pairs[c]
        if partner not in known:
            raise ValueError(
                f"pairs maps {c!r} to {partner!r}, which is not a class of {classes.tolist()}"
            )
        if known[partner] == i:
            raise ValueError(f"pairs maps class {c!r} to itself; a flip must change the label")
        targets[i] = known[partner]
    extra = [p for p in pairs if p not in known]
    if extra:
        raise ValueError(f"pairs has keys that are not classes: {extra}")
    return targets


def flip_labels(
    y,
    rate: float,
    *,
    kind: Literal["uniform", "pairwise"] = "uniform",
    classes=None,
    pairs: Mapping | None = None,
    random_state: RandomStateLike = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * n)`` labels, chosen uniformly at random without replacement.

    Parameters
    ----------
    y : array-like, shape (n,)
        Clean labels.
    rate : float in [0, 1]
        Fraction of labels to flip; ``round(rate * n)`` (Python rounding) are flipped.
    kind : {"uniform", "pairwise"}, default="uniform"
        ``"uniform"``: a flipped label becomes one of the *other* classes, uniformly.
        ``"pairwise"``: class ``c`` always becomes ``pairs[c]``.
    classes : sequence, optional
        The label set (its order defines the default pairs). Defaults to ``np.unique(y)``; give
        it when ``y`` does not contain every class. Must contain every label of ``y``.
    pairs : mapping class -> class, optional
        Partner of every class for ``kind="pairwise"``; defaults to the next class of
        ``classes``, cyclically. Ignored for ``kind="uniform"``.
    random_state : None, int, Generator or RandomState, default=None

    Returns
    -------
    y_noisy : ndarray, shape (n,)
        Labels with the flips applied (the dtype of ``classes``).
    noise_mask : ndarray of bool, shape (n,)
        True exactly where ``y_noisy != y``; ``noise_mask.sum() == round(rate * n)``.
    """
    y = check_labels(y)
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise ValueError(f"rate must be a number in [0, 1]; got {rate!r}")
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1]; got {rate}")
    if kind not in ("uniform", "pairwise"):
        raise ValueError(f"kind must be 'uniform' or 'pairwise'; got {kind!r}")
    class_arr = _check_classes(y, classes)
    k = class_arr.shape[0]
    pos = _class_positions(y, class_arr)
    targets = _pair_targets(class_arr, pairs) if kind == "pairwise" else None
    rng = check_generator(random_state)

    n = y.shape[0]
    n_flip = round(rate * n)
    flip = rng.choice(n, size=n_flip, replace=False) if n_flip else np.empty(0, dtype=np.intp)
    new_pos = pos.copy()
    if kind == "uniform":
        new_pos[flip] = (pos[flip] + rng.integers(1, k, size=n_flip)) % k
    else:
        new_pos[flip] = targets[pos[flip]]
    mask = np.zeros(n, dtype=bool)
    mask[flip] = True
    return class_arr[new_pos], mask
