"""Figures 4, 6 and 8: variance-based purification, V[X] and test accuracy per iteration.

Each iteration removes the ``k`` points with the largest delta(z) = V(Z) - V(Z \\ z)
(:class:`~divpred.Purifier`), refits and records V on the kept training set and the accuracy on
a clean test set. The table has the paper's columns ``iteration, size, potential, TestAcc``,
followed by ``contaminants_removed`` (known or estimated contaminants removed so far) and
``train_loss``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from .._validation import check_positive_int
from ..data import (
    PAPER_FILE_DISTRIBUTIONS,
    PAPER_SD_FILES,
    flip_labels,
    load_digits_pair,
    load_paper_emnist,
    load_sd_csv,
    make_sd,
)
from ..purify import Purifier
from ..scores import DELTA_METHODS
from ..stopping import choose_iteration
from ._common import (
    PURIFICATION_COLUMNS,
    RunContext,
    make_model,
    require_files,
    run_result,
    single_threaded_blas,
    start_run,
    sub_seed,
)

__all__ = ["figure4", "figure6", "figure8", "purification_table"]

MAX_REMOVED_FRACTION = 2.0 / 3.0
"""Purification never removes more than this share of the training set (a class may vanish)."""

_SD_TRAIN_FILES = {
    "fig6": "synthetic_train_mix_2spec.csv",
    "fig8": "synthetic_train_mix_3spec.csv",
}
"""The paper's training file of each SD purification figure."""


def purification_table(history: pd.DataFrame) -> pd.DataFrame:
    """The paper's columns from a :class:`~divpred.Purifier` history (plus two of ours)."""
    table = pd.DataFrame(
        {
            "iteration": history["iteration"].astype(int),
            "size": history["size"].astype(int),
            "potential": history["variance"].astype(float),
            "TestAcc": history["eval_accuracy"].astype(float),
        }
    )
    if "contaminants_removed" in history:
        table["contaminants_removed"] = history["contaminants_removed"].astype(int)
    table["train_loss"] = history["train_loss"].astype(float)
    assert tuple(table.columns[:4]) == PURIFICATION_COLUMNS
    return table


def _run(
    figure,
    run: RunContext,
    *,
    X,
    y,
    contamination,
    X_test,
    y_test,
    reference_accuracy,
    data,
    method,
    k,
    max_iter,
    contamination_estimated=False,
):
    if method not in DELTA_METHODS:
        raise ValueError(f"method must be one of {DELTA_METHODS}; got {method!r}")
    check_positive_int(k, "k")
    check_positive_int(max_iter, "max_iter")
    cap = max(1, int(MAX_REMOVED_FRACTION * X.shape[0]) // int(k))
    n_iter = min(int(max_iter), cap)
    purifier = Purifier(
        make_model(run.model, sub_seed(run.seed, 100)),
        method=method,
        k=int(k),
        max_iter=n_iter,
        stop="none",
        max_fraction=1.0,  # the paper's curves: capped by n_iter (MAX_REMOVED_FRACTION) alone
        random_state=run.seed,
        progress=run.progress,
    )
    with single_threaded_blas():
        while True:
            try:
                purifier.fit(X, y, eval_set=(X_test, y_test), contamination=contamination)
                break
            except ValueError as exc:
                # Removing many points can empty a class; rerun with fewer iterations.
                if "class" not in str(exc) or n_iter <= 1:
                    raise
                n_iter = max(1, n_iter * 3 // 4)
                purifier.set_params(max_iter=n_iter)
    history = purifier.history_
    table = purification_table(history)
    acc = table["TestAcc"].to_numpy()
    best = int(np.argmax(acc))
    knee = choose_iteration(history, "knee")
    return run_result(
        figure,
        table,
        run,
        history=history,
        reference_accuracy=float(reference_accuracy),
        best_iteration=best,
        knee_iteration=None if knee is None else int(knee),
        k=int(k),
        contaminants_total=int(np.sum(contamination)),
        contamination_estimated=bool(contamination_estimated),
        methods_used=sorted(set(history["method_used"].iloc[1:])),
        data=data,
        settings={
            "method": method,
            "k": int(k),
            "max_iter": n_iter,
            "n_train": int(X.shape[0]),
            "n_test": int(X_test.shape[0]),
        },
    )


# ----------------------------------------------------------------------------- Figure 4
def figure4(
    *,
    data_dir=None,
    quick: bool = False,
    flip_rate: float = 0.3,
    model=None,
    method: str = "fast",
    k: int | None = None,
    max_iter: int | None = None,
    random_state: int = 0,
    progress: bool = False,
) -> dict:
    """Purification of digits 4 and 8 with 30% wrong training labels (the paper's Figure 4).

    * With ``data_dir``: the paper's ``Image_train_30error.npz`` (600 images, 30% wrong labels)
      and ``Image_test.npz`` (600 clean). The release does not say which labels are wrong, so
      ``contaminants_removed`` counts removed rows whose label disagrees with a model fitted on
      the clean test file (an estimate), and the pure-data reference accuracy is a 2-fold
      stratified cross-fit on the clean test file (a model on 300 clean images tested on the
      other 300), since there is no clean training file. Default ``k = 10``.
    * Without: scikit-learn's 8x8 digits 4 and 8 (355 images), split 50/50 stratified, a
      fraction ``flip_rate`` of the training labels flipped; reference = the same training rows
      with their true labels. Default ``k = 5`` (the set is a third of the paper's).

    At most 40 iterations (quick: 30) and at most 2/3 of the training set are removed.

    Returns
    -------
    dict
        ``table`` (``iteration, size, potential, TestAcc, contaminants_removed, train_loss``),
        ``history`` (the Purifier's), ``reference_accuracy``, ``best_iteration`` (the iteration
        of maximal test accuracy, the paper's red line), ``knee_iteration`` (the label-free knee
        rule), ``k``, ``contaminants_total``, ``contamination_estimated``, ``methods_used``,
        ``data``, ``settings``, ``seconds``.
    """
    run = start_run(
        data_dir=data_dir, quick=quick, model=model, random_state=random_state, progress=progress
    )
    seed = run.seed
    max_iter = (30 if quick else 40) if max_iter is None else max_iter
    if run.data_dir is not None:
        train_path, test_path = require_files(
            run.data_dir, ["Image_train_30error.npz", "Image_test.npz"], "fig4"
        )
        train, test = load_paper_emnist(train_path), load_paper_emnist(test_path)
        X, y, X_test, y_test = train.X, train.y, test.X, test.y
        with single_threaded_blas():
            clean = make_model(model, sub_seed(seed, 41)).fit(X_test, y_test)
            contamination = clean.predict(X) != y
            folds = StratifiedKFold(2, shuffle=True, random_state=sub_seed(seed, 42) % 2**31)
            scores = []
            for i, (a, b) in enumerate(folds.split(X_test, y_test)):
                est = make_model(model, sub_seed(seed, 43, i)).fit(X_test[a], y_test[a])
                scores.append(est.score(X_test[b], y_test[b]))
        reference = float(np.mean(scores))
        data = (
            f"paper's EMNIST 4/8 files {train_path.name} ({X.shape[0]} images, 30% wrong labels) "
            f"and {test_path.name} ({X_test.shape[0]} clean); contaminants estimated as labels "
            "disagreeing with a model fitted on the test file; reference = 2-fold cross-fit on "
            "the test file"
        )
        estimated = True
        k = 10 if k is None else k
    else:
        if not 0.0 <= float(flip_rate) < 1.0:
            raise ValueError(f"flip_rate must be in [0, 1); got {flip_rate!r}")
        pair = load_digits_pair(4, 8)
        X, X_test, y_clean, y_test = train_test_split(
            pair.X, pair.y, test_size=0.5, stratify=pair.y, random_state=sub_seed(seed, 44)
        )
        y, contamination = flip_labels(y_clean, float(flip_rate), random_state=sub_seed(seed, 45))
        with single_threaded_blas():
            ref_model = make_model(model, sub_seed(seed, 46)).fit(X, y_clean)
            reference = float(ref_model.score(X_test, y_test))
        data = (
            f"scikit-learn digits 4 and 8 ({pair.X.shape[0]} images 8x8), 50/50 stratified split, "
            f"{int(contamination.sum())} of {X.shape[0]} training labels flipped "
            f"(rate {float(flip_rate):g}); reference = same training rows, true labels"
        )
        estimated = False
        k = 5 if k is None else k
    return _run(
        "fig4",
        run,
        X=X,
        y=y,
        contamination=contamination,
        X_test=X_test,
        y_test=y_test,
        reference_accuracy=reference,
        data=data,
        method=method,
        k=k,
        max_iter=max_iter,
        contamination_estimated=estimated,
    )


# ----------------------------------------------------------------------------- Figures 6, 8
def _sd_purification(figure: str, run: RunContext, sizes, n_test, *, method, k, max_iter) -> dict:
    """Figure 6 or 8 from the arguments of :func:`figure6`; the training file by ``figure``."""
    seed = run.seed
    max_iter = (30 if run.quick else 40) if max_iter is None else max_iter
    k = 10 if k is None else k
    if run.data_dir is not None:
        train_file = _SD_TRAIN_FILES[figure]
        files = [train_file, "synthetic_test_dis1.csv", "synthetic_train_pure.csv"]
        train_path, test_path, pure_path = require_files(run.data_dir, files, figure)
        blocks = PAPER_SD_FILES[train_file]
        source = np.repeat(np.arange(len(blocks)), [n for _, n in blocks])
        train = load_sd_csv(train_path, source=source)
        test, pure = load_sd_csv(test_path), load_sd_csv(pure_path)
        sizes_text = "/".join(str(n) for _, n in blocks)
        data = (
            f"paper's files {train_path.name} ({sizes_text}), {test_path.name} "
            f"({test.X.shape[0]} rows of distribution 1); reference trained on {pure_path.name}"
        )
    else:
        sizes = tuple(int(s) for s in sizes)
        dists = tuple(PAPER_FILE_DISTRIBUTIONS[i + 1] for i in range(len(sizes)))
        train = make_sd(sizes, dists, random_state=sub_seed(seed, 60, len(sizes)))
        test = make_sd(n_test, dists[0], random_state=sub_seed(seed, 61, len(sizes)))
        pure = make_sd(n_test, dists[0], random_state=sub_seed(seed, 62, len(sizes)))
        data = (
            f"SD-{len(sizes)} generated with make_sd ({'/'.join(map(str, sizes))}, the paper's "
            f"distributions), test and reference sets of {n_test} rows of distribution 1"
        )
    with single_threaded_blas():
        ref_model = make_model(run.model, sub_seed(seed, 63))
        reference = ref_model.fit(pure.X, pure.y).score(test.X, test.y)
    return _run(
        figure,
        run,
        X=train.X,
        y=train.y,
        contamination=train.source > 0,
        X_test=test.X,
        y_test=test.y,
        reference_accuracy=reference,
        data=data,
        method=method,
        k=k,
        max_iter=max_iter,
    )


def figure6(
    *,
    data_dir=None,
    quick: bool = False,
    sizes=(700, 300),
    n_test: int = 1000,
    model=None,
    method: str = "fast",
    k: int | None = None,
    max_iter: int | None = None,
    random_state: int = 0,
    progress: bool = False,
) -> dict:
    """Purification of SD-2 with |A1| = 700, |A2| = 300 (the paper's Figure 6).

    Test set: ``n_test`` rows of distribution 1; reference: a model trained on ``n_test`` pure
    rows of distribution 1. With ``data_dir`` the paper's ``synthetic_train_mix_2spec.csv``,
    ``synthetic_test_dis1.csv`` and ``synthetic_train_pure.csv`` are used, otherwise the data
    are generated with :func:`~divpred.data.make_sd` and seeds derived from ``random_state``.
    ``k = 10`` points per iteration, 40 iterations (quick: 30). Returns the same dict as
    :func:`figure4` (contaminants = the rows of distribution 2).
    """
    run = start_run(
        data_dir=data_dir, quick=quick, model=model, random_state=random_state, progress=progress
    )
    return _sd_purification("fig6", run, sizes, n_test, method=method, k=k, max_iter=max_iter)


def figure8(
    *,
    data_dir=None,
    quick: bool = False,
    sizes=(700, 150, 150),
    n_test: int = 1000,
    model=None,
    method: str = "fast",
    k: int | None = None,
    max_iter: int | None = None,
    random_state: int = 0,
    progress: bool = False,
) -> dict:
    """Purification of SD-3 with 700/150/150 rows (the paper's Figure 8).

    As :func:`figure6`, with ``synthetic_train_mix_3spec.csv``; contaminants are the rows of
    distributions 2 and 3.
    """
    run = start_run(
        data_dir=data_dir, quick=quick, model=model, random_state=random_state, progress=progress
    )
    return _sd_purification("fig8", run, sizes, n_test, method=method, k=k, max_iter=max_iter)
