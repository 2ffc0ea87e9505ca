"""Figures 3, 5 and 7: V[X] and test accuracy as functions of the composition of the data.

Each point of a sweep is ``n_reps`` replications; a replication draws its own data (and split),
fits the model on the training part, computes V[X] on that same training part and the accuracy
on the held-out part. The tables have the paper's columns: the composition (``a``, and ``b`` for
Figure 7), then ``E_acc, std_acc, E_p, std_p`` (means and population standard deviations over
the replications; ``p`` is the paper's "potential" V[X]), followed by the paper's Section 5
quantities: ``E_kurt, std_kurt`` (kurtosis of X, :func:`~divpred.influence_kurtosis`) and
``entropy`` (of the known composition, :mod:`divpred.experiments.section5`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .._validation import check_positive_int
from ..data import PAPER_FILE_DISTRIBUTIONS, PAPER_SD_FILES, load_digits_all, load_idx, load_sd_csv
from ..data import flip_labels as _flip_labels
from ..data import make_sd as _make_sd
from ..influence import influence_kurtosis, influence_variance
from ._common import (
    SURFACE_COLUMNS,
    SWEEP_COLUMNS,
    RunContext,
    aggregate_replicates,
    make_model,
    progress_bar,
    require_files,
    run_result,
    single_threaded_blas,
    start_run,
    sub_seed,
)
from .section5 import with_entropy

__all__ = ["figure3", "figure5", "figure7"]

PAPER_RATES = tuple(round(0.02 * i, 2) for i in range(16))
"""Mislabel rates of the paper's Figure 3 (0 to 0.30 in steps of 0.02)."""

QUICK_RATES = (0.0, 0.1, 0.2, 0.3)


KURTOSIS_MAX_N = 5000
"""Above this many training rows the kurtosis (O(n^2 m)) is not computed (NaN)."""

SECTION5_COLUMNS = ("E_kurt", "std_kurt", "entropy")
"""Columns appended to the paper's in the sweep tables."""


def _fit_point(model, seed, X_train, y_train, X_test, y_test) -> dict:
    """Accuracy on the test part, V[X] and the kurtosis of X on the training part."""
    est = make_model(model, seed).fit(X_train, y_train)
    n = len(y_train)
    kurtosis = influence_kurtosis(est, X_train, y_train) if n <= KURTOSIS_MAX_N else np.nan
    return {
        "accuracy": float(est.score(X_test, y_test)),
        "variance": float(influence_variance(est, X_train, y_train)),
        "kurtosis": float(kurtosis),
    }


def _sweep_table(figure: str, raw: pd.DataFrame, coords: list[str], columns, total: int):
    """The paper's columns, then the mean and std of the kurtosis and the entropy."""
    table = aggregate_replicates(raw, coords)
    grouped = raw.groupby(coords, sort=True)["kurtosis"]
    table["E_kurt"] = grouped.mean().to_numpy()
    table["std_kurt"] = grouped.std(ddof=0).to_numpy()
    return with_entropy(figure, table[[*columns, "E_kurt", "std_kurt"]], total)


def _tabulate(figure: str, run: RunContext, rows: Iterator[dict], total: int) -> pd.DataFrame:
    """The replicates of a sweep, one row per fit, with a progress bar of ``total`` fits.

    Parameters
    ----------
    figure : str
        Label of the progress bar.
    run : RunContext
        Says whether to show the bar.
    rows : iterator of dict
        A generator that fits one replicate per row it yields. It must be lazy: the fits have
        to run here, inside the single-threaded BLAS block.
    total : int
        How many rows ``rows`` yields.

    Returns
    -------
    pandas.DataFrame
    """
    out = []
    bar = progress_bar(run.progress, total, figure)
    with single_threaded_blas():
        for row in rows:
            out.append(row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- Figure 3
def figure3(
    *,
    data_dir=None,
    quick: bool = False,
    rates=None,
    n_reps: int | None = None,
    model=None,
    random_state: int = 0,
    progress: bool = False,
    n_per_class: int | None = None,
    image_pool: int = 4,
) -> dict:
    """V[X] and test accuracy against the mislabel rate r (the paper's Figure 3).

    Paper: 10^4 EMNIST digits (10^3 per class), an MLP, a disjoint test set of 10^4, rates
    0..0.30 in steps of 0.02, 5 replications per rate. Here: the model is
    :func:`~divpred.experiments.default_model` unless ``model`` is given, and the data are

    * full EMNIST/MNIST digits when ``data_dir`` holds them (IDX files ``*train-images*`` /
      ``*test-images*`` or ``t10k-images*`` with matching label files, or an ``.npz`` with
      ``x_train, y_train, x_test, y_test``): ``n_per_class`` training images per digit (default
      1000, quick 100) and as many test images, average-pooled by ``image_pool`` (28x28 -> 7x7
      by default, so the Hessian stays small);
    * otherwise scikit-learn's 1797 8x8 digits (all 10 classes), split 50/50 stratified.

    A replication draws its own split (subsample for image files) and flips ``round(r n)``
    training labels uniformly to another class; the test labels stay clean.

    Parameters
    ----------
    data_dir : path, optional
        Folder searched for full EMNIST/MNIST files; when it has none the digits are used (the
        paper's data release has no file for this figure). Must exist.
    quick : bool
        Rates (0, 0.1, 0.2, 0.3) and 2 replications (defaults when ``rates``/``n_reps`` are None).
    rates : sequence of float, optional
    n_reps : int, optional
        Default 5 (quick 2).
    model : estimator, optional
    random_state : int
    progress : bool
        tqdm bar on stderr.

    Returns
    -------
    dict
        ``table`` (columns ``a, E_acc, std_acc, E_p, std_p`` with ``a`` the rate, then
        ``E_kurt, std_kurt, entropy``), ``replicates`` (one row per fit: ``accuracy, variance,
        kurtosis``), ``data``, ``settings``, ``seconds``.
    """
    run = start_run(
        data_dir=data_dir, quick=quick, model=model, random_state=random_state, progress=progress
    )
    seed = run.seed
    rates = tuple(QUICK_RATES if quick else PAPER_RATES) if rates is None else tuple(rates)
    if not rates or any(not 0.0 <= float(r) <= 1.0 for r in rates):
        raise ValueError(f"rates must be a non-empty sequence in [0, 1]; got {rates!r}")
    n_reps = _check_reps(n_reps, quick)
    images = _find_digit_images(run.data_dir) if run.data_dir is not None else None
    if images is not None:
        n_per_class = (100 if quick else 1000) if n_per_class is None else int(n_per_class)
        draw, description = _image_sampler(images, n_per_class, image_pool)
    else:
        draw, description = _digits_sampler()

    def fits() -> Iterator[dict]:
        for j in range(n_reps):
            X_tr, y_tr, X_te, y_te = draw(sub_seed(seed, 3, j))
            for i, r in enumerate(rates):
                y_noisy, _ = _flip_labels(
                    y_tr, float(r), classes=np.unique(y_tr), random_state=sub_seed(seed, 3, j, i)
                )
                point = _fit_point(model, sub_seed(seed, 30, j, i), X_tr, y_noisy, X_te, y_te)
                yield {"a": float(r), "rep": j, **point}

    raw = _tabulate("fig3", run, fits(), len(rates) * n_reps)
    table = _sweep_table("fig3", raw, ["a"], SWEEP_COLUMNS, total=0)
    return run_result(
        "fig3",
        table,
        run,
        replicates=raw,
        data=description,
        settings={"rates": list(rates), "n_reps": n_reps},
    )


def _check_reps(n_reps, quick) -> int:
    if n_reps is None:
        return 2 if quick else 5
    check_positive_int(n_reps, "n_reps")
    return int(n_reps)


def _digits_sampler():
    data = load_digits_all()

    def draw(seed):
        X_tr, X_te, y_tr, y_te = train_test_split(
            data.X, data.y, test_size=0.5, stratify=data.y, random_state=seed
        )
        return X_tr, y_tr, X_te, y_te

    return draw, (
        f"scikit-learn digits, 10 classes, {data.X.shape[0]} images 8x8, "
        "50/50 stratified split per replication"
    )


def _image_sampler(images, n_per_class, pool):
    (X_tr_all, y_tr_all, X_te_all, y_te_all), name = images
    check_positive_int(pool, "image_pool")
    X_tr_all = _pool_images(X_tr_all, pool)
    X_te_all = _pool_images(X_te_all, pool)
    side = int(round(np.sqrt(X_tr_all.shape[1])))

    def take(y, per_class, rng):
        idx = []
        for c in np.unique(y):
            rows = np.nonzero(y == c)[0]
            idx.append(rng.choice(rows, size=min(per_class, rows.size), replace=False))
        return np.sort(np.concatenate(idx))

    def draw(seed):
        rng = np.random.default_rng(seed)
        i_tr = take(y_tr_all, n_per_class, rng)
        i_te = take(y_te_all, n_per_class, rng)
        return X_tr_all[i_tr], y_tr_all[i_tr], X_te_all[i_te], y_te_all[i_te]

    return draw, (
        f"{name}: {n_per_class} training and {n_per_class} test images per digit drawn per "
        f"replication, pooled to {side}x{side}"
    )


def _pool_images(X: np.ndarray, pool: int) -> np.ndarray:
    """Average-pool flattened square images by ``pool`` (edges cropped to a multiple)."""
    side = int(round(np.sqrt(X.shape[1])))
    if side * side != X.shape[1]:
        raise ValueError(f"images must be square; got {X.shape[1]} pixels")
    if pool == 1:
        return X
    s = side // pool
    if s < 1:
        raise ValueError(f"image_pool={pool} is larger than the image side {side}")
    imgs = X.reshape(-1, side, side)[:, : s * pool, : s * pool]
    return imgs.reshape(-1, s, pool, s, pool).mean(axis=(2, 4)).reshape(X.shape[0], s * s)


_PAPER_IMAGE_FILES = {"Image_train_30error.npz", "Image_test.npz"}


def _find_digit_images(data_dir: Path):
    """((X_train, y_train, X_test, y_test), description) of full EMNIST/MNIST digits, or None."""
    files = sorted(p for p in data_dir.iterdir() if p.is_file())
    for train_img in files:
        name = train_img.name.lower()
        if "train-images" not in name:
            continue
        test_name = re.sub("train-images", "test-images", train_img.name, flags=re.IGNORECASE)
        if "emnist" not in name:
            test_name = re.sub("train-images", "t10k-images", train_img.name, flags=re.I)
        test_img = train_img.with_name(test_name)
        pairs = [(train_img, _labels_of(train_img)), (test_img, _labels_of(test_img))]
        if not all(p.is_file() for pair in pairs for p in pair):
            continue
        transpose = "emnist" in name
        tr = load_idx(*pairs[0], transpose=transpose)
        te = load_idx(*pairs[1], transpose=transpose)
        return (tr.X, tr.y, te.X, te.y), f"IDX digits {train_img.name} / {test_img.name}"
    for path in files:
        if path.suffix.lower() != ".npz" or path.name in _PAPER_IMAGE_FILES:
            continue
        arrays = _read_npz_lower(path)
        if arrays is None:
            continue
        return arrays, f"npz digits {path.name}"
    return None


def _labels_of(images: Path) -> Path:
    name = re.sub("images", "labels", images.name, flags=re.IGNORECASE)
    return images.with_name(name.replace("idx3", "idx1"))


def _read_npz_lower(path: Path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k.lower(): archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"could not read npz file {path}: {exc}") from None
    keys = ("x_train", "y_train", "x_test", "y_test")
    if not all(k in arrays for k in keys):
        return None
    out = []
    for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
        X = np.asarray(arrays[xk])
        y = np.asarray(arrays[yk]).ravel()
        if X.shape[0] == 0 or X.shape[0] != y.shape[0]:
            raise ValueError(f"{path.name}: {xk} and {yk} are empty or of different lengths")
        X = X.reshape(X.shape[0], -1).astype(np.float64)
        if X.max() > 1.0:
            X = X / 255.0
        out.extend([X, y.astype(np.int64)])
    return tuple(out)


# ----------------------------------------------------------------------------- SD sampling
def _sd_pool_sampler(data_dir: Path | None, file_name: str, n_blocks: int, figure: str):
    """A function (sizes, seed) -> (X, y) drawing each block from a file or from make_sd."""
    if data_dir is None:
        dists = tuple(PAPER_FILE_DISTRIBUTIONS[i + 1] for i in range(n_blocks))

        def draw(sizes, seed):
            data = _make_sd(tuple(int(s) for s in sizes), dists, random_state=seed)
            return data.X, data.y

        return draw, (
            f"SD-{n_blocks} generated with make_sd (the paper's distributions 1..{n_blocks}, "
            "uniform letters), fresh data per replication"
        )
    (path,) = require_files(data_dir, [file_name], figure)
    blocks = PAPER_SD_FILES[file_name]
    source = np.repeat(np.arange(len(blocks)), [n for _, n in blocks])
    data = load_sd_csv(path, source=source)
    if data.X.shape[0] != source.shape[0]:
        raise ValueError(f"{path} should have {source.shape[0]} rows; got {data.X.shape[0]}")
    block_rows = [np.nonzero(data.source == b)[0] for b in range(n_blocks)]

    def draw(sizes, seed):
        rng = np.random.default_rng(seed)
        idx = []
        for rows, size in zip(block_rows, sizes, strict=True):
            if size > rows.size:
                raise ValueError(f"{path.name} has only {rows.size} rows per block; asked {size}")
            idx.append(rng.choice(rows, size=int(size), replace=False))
        idx = np.concatenate(idx)
        return data.X[idx], data.y[idx]

    sizes = ", ".join(str(n) for _, n in blocks)
    return draw, f"rows drawn without replacement from the blocks ({sizes}) of {path.name}"


def _split_fit(model, X, y, test_size, seed) -> dict:
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=seed)
    return _fit_point(model, seed, X_tr, y_tr, X_te, y_te)


def _check_grid(total, step, name="step") -> tuple[int, int]:
    check_positive_int(total, "total")
    check_positive_int(step, name)
    if step > total:
        raise ValueError(f"{name}={step} is larger than total={total}")
    return int(total), int(step)


class _Composition(NamedTuple):
    """What tells Figure 5 from Figure 7: the sweep over the block sizes of one paper file."""

    file_name: str
    """The paper's file of 1000 rows per distribution."""
    coords: tuple[str, ...]
    """Names of the swept sizes of blocks 2, 3, ...; block 1 takes the rest of ``total``."""
    columns: tuple[str, ...]
    """The paper's table columns."""
    seed_tag: int
    """Keeps the figures' seed streams apart."""
    step: int
    """Default ``step``: the paper's."""
    quick_step: int
    """Default ``step`` with ``quick``."""


_COMPOSITIONS = {
    "fig5": _Composition("synthetic_mix12.csv", ("a",), SWEEP_COLUMNS, 5, 20, 60),
    "fig7": _Composition("synthetic_mix123.csv", ("a", "b"), SURFACE_COLUMNS, 7, 50, 100),
}


def _composition_grid(total: int, step: int, n_coords: int) -> list[tuple[int, ...]]:
    """All tuples of ``n_coords`` multiples of ``step`` summing to at most ``total``, sorted."""
    if n_coords == 0:
        return [()]
    return [
        (a, *rest)
        for a in range(0, total + 1, step)
        for rest in _composition_grid(total - a, step, n_coords - 1)
    ]


def _composition_sweep(
    figure: str, run: RunContext, *, total, step, n_reps, test_size: float
) -> dict:
    """Figure 5 or 7 (chosen by ``figure``) from the arguments of :func:`figure5`.

    Returns
    -------
    dict
        As documented in :func:`figure5`, with ``b`` in the table for Figure 7.
    """
    spec = _COMPOSITIONS[figure]
    if step is None:
        step = spec.quick_step if run.quick else spec.step
    total, step = _check_grid(total, step)
    n_reps = _check_reps(n_reps, run.quick)
    draw, description = _sd_pool_sampler(run.data_dir, spec.file_name, len(spec.coords) + 1, figure)
    grid = _composition_grid(total, step, len(spec.coords))

    def fits() -> Iterator[dict]:
        for point in grid:
            for j in range(n_reps):
                s = sub_seed(run.seed, spec.seed_tag, *point, j)
                X, y = draw((total - sum(point), *point), s)
                yield {
                    **dict(zip(spec.coords, point, strict=True)),
                    "rep": j,
                    **_split_fit(run.model, X, y, test_size, s),
                }

    raw = _tabulate(figure, run, fits(), len(grid) * n_reps)
    table = _sweep_table(figure, raw, list(spec.coords), spec.columns, total)
    return run_result(
        figure,
        table,
        run,
        replicates=raw,
        data=description,
        settings={"total": total, "step": step, "n_reps": n_reps, "test_size": test_size},
    )


# ----------------------------------------------------------------------------- Figure 5
def figure5(
    *,
    data_dir=None,
    quick: bool = False,
    total: int = 600,
    step: int | None = None,
    n_reps: int | None = None,
    test_size: float = 0.2,
    model=None,
    random_state: int = 0,
    progress: bool = False,
) -> dict:
    """V[X] and test accuracy of SD-2 against |A2| with |A1| + |A2| = ``total`` (Figure 5).

    For every ``a = |A2|`` in ``0, step, ..., total`` (paper: step 20) and each replication, Z
    holds ``total - a`` rows of distribution 1 and ``a`` of distribution 2, is split 8:2 at
    random into train and test, the model is fitted on the train part, V[X] is computed on the
    train part and the accuracy on the test part (the paper's caption).

    Parameters
    ----------
    data_dir : path, optional
        Folder with the paper's ``synthetic_mix12.csv`` (1000 rows of each distribution); rows are
        drawn from its blocks. Without it the data come from :func:`~divpred.data.make_sd`.
    quick : bool
        Step 60 and 2 replications unless given.
    total, step, n_reps, test_size, model, random_state, progress : see above.

    Returns
    -------
    dict
        ``table`` (``a, E_acc, std_acc, E_p, std_p, E_kurt, std_kurt, entropy``),
        ``replicates``, ``data``, ``settings``, ``seconds``.
    """
    run = start_run(
        data_dir=data_dir, quick=quick, model=model, random_state=random_state, progress=progress
    )
    return _composition_sweep(
        "fig5", run, total=total, step=step, n_reps=n_reps, test_size=test_size
    )


# ----------------------------------------------------------------------------- Figure 7
def figure7(
    *,
    data_dir=None,
    quick: bool = False,
    total: int = 600,
    step: int | None = None,
    n_reps: int | None = None,
    test_size: float = 0.2,
    model=None,
    random_state: int = 0,
    progress: bool = False,
) -> dict:
    """V[X] and test accuracy of SD-3 over (|A2|, |A3|) with |A1| + |A2| + |A3| = ``total``.

    The grid is ``a = |A2|`` and ``b = |A3|`` in steps of ``step`` (paper: 50) with
    ``a + b <= total``; everything else as in :func:`figure5`.

    Parameters
    ----------
    data_dir : path, optional
        Folder with the paper's ``synthetic_mix123.csv`` (1000 rows of each distribution).
    quick : bool
        Step 100 and 2 replications unless given.

    Returns
    -------
    dict
        ``table`` (``a, b, E_acc, std_acc, E_p, std_p, E_kurt, std_kurt, entropy``),
        ``replicates``, ``data``, ``settings``, ``seconds``.
    """
    run = start_run(
        data_dir=data_dir, quick=quick, model=model, random_state=random_state, progress=progress
    )
    return _composition_sweep(
        "fig7", run, total=total, step=step, n_reps=n_reps, test_size=test_size
    )
