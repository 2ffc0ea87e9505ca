"""The paper's data sets and result tables, read from their copy in ``divpred/datasets/paper``.

The files are the authors' public release (https://github.com/FenixHuang667/DataPurification,
MIT licence; ``paper/LICENSE`` and ``paper/NOTICE`` sit beside them). Importing this module
reads nothing and imports neither numpy, pandas nor scikit-learn (``divpred datasets --help``
stays fast): the loaders do, when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..data import Dataset, SDData

__all__ = [
    "PAPER_DATASETS",
    "PaperData",
    "PaperDataSpec",
    "load_paper",
    "load_paper_results",
    "paper_data_dir",
]

_PAPER_DIR = Path(__file__).resolve().parent / "paper"
_SD_TEST_FILE = "synthetic_test_dis1.csv"
_EMNIST_TEST_FILE = "Image_test.npz"


class PaperDataSpec(NamedTuple):
    """Where one of the paper's data sets lives in the shipped folder."""

    train_file: str
    """Training file."""
    test_file: str
    """Clean test file (every SD test row is from distribution 1)."""
    description: str
    """One line for people."""


PAPER_DATASETS: Mapping[str, PaperDataSpec] = MappingProxyType(
    {
        "sd2": PaperDataSpec(
            "synthetic_train_mix_2spec.csv",
            _SD_TEST_FILE,
            "SD-2 (Figure 6): 700 rows of distribution 1, then 300 of distribution 2",
        ),
        "sd3": PaperDataSpec(
            "synthetic_train_mix_3spec.csv",
            _SD_TEST_FILE,
            "SD-3 (Figure 8): 700 rows of distribution 1, then 150 of 2 and 150 of 3",
        ),
        "sd_pure": PaperDataSpec(
            "synthetic_train_pure.csv",
            _SD_TEST_FILE,
            "SD, 1000 rows of distribution 1 (the pure reference of Figures 6 and 8)",
        ),
        "sd2_pool": PaperDataSpec(
            "synthetic_mix12.csv",
            _SD_TEST_FILE,
            "SD, 1000 rows of distribution 1, then 1000 of 2 (the pool of Figure 5)",
        ),
        "sd3_pool": PaperDataSpec(
            "synthetic_mix123.csv",
            _SD_TEST_FILE,
            "SD, 1000 rows each of distributions 1, 2 and 3 (the pool of Figure 7)",
        ),
        "emnist48": PaperDataSpec(
            "Image_train_30error.npz",
            _EMNIST_TEST_FILE,
            "EMNIST digits 4 and 8 (Figure 4): 600 training images with 30% wrong labels, "
            "600 clean test images",
        ),
    }
)
"""The names :func:`load_paper` accepts, with their files and a description."""


@dataclass
class PaperData:
    """One of the paper's data sets: a training set, its clean test set and what is known.

    Attributes
    ----------
    name : str
        Key of :data:`PAPER_DATASETS`.
    train : SDData or Dataset
        Training set (:class:`~divpred.SDData` for the SD sets, with ``source`` and
        ``distributions`` filled in; :class:`~divpred.Dataset` for EMNIST).
    test : SDData or Dataset
        Clean test set: 1000 SD rows of distribution 1, or 600 correctly labelled images.
    contamination : ndarray of bool, shape (n,), or None
        True for the training rows that do not follow the first distribution (SD: every row of
        distribution 2 or 3). None when unknown: the EMNIST release does not say which 30% of
        its labels are wrong.
    source : ndarray of int, shape (n,), or None
        0-based distribution of each SD training row (0 = distribution 1); None for EMNIST.
    description : str
    train_path, test_path : pathlib.Path
        The shipped files.
    """

    name: str
    train: SDData | Dataset
    test: SDData | Dataset
    contamination: np.ndarray | None
    source: np.ndarray | None
    description: str
    train_path: Path
    test_path: Path

    @property
    def X(self) -> np.ndarray:
        """Training features, float64 of shape (n, d) (d = 40 for SD, 784 for EMNIST)."""
        return self.train.X

    @property
    def y(self) -> np.ndarray:
        """Training labels, shape (n,) (letters R/D/B/N for SD, digits 4/8 for EMNIST)."""
        return self.train.y

    @property
    def X_test(self) -> np.ndarray:
        """Test features, float64 of shape (n_test, d)."""
        return self.test.X

    @property
    def y_test(self) -> np.ndarray:
        """Test labels, shape (n_test,)."""
        return self.test.y

    @property
    def feature_names(self) -> list[str]:
        return list(self.train.feature_names)


def paper_data_dir() -> Path:
    """The folder of the shipped files (the paper's data files, ``results/``, LICENSE, NOTICE).

    It can be passed as ``data_dir`` to the figure functions of :mod:`divpred.experiments`.

    Raises
    ------
    ValueError
        When the folder is missing (an installation without the package data).
    """
    if not (_PAPER_DIR / "NOTICE").is_file():
        raise ValueError(
            f"the paper's data are not installed at {_PAPER_DIR}; reinstall divpred "
            "(pip install .) so that its package data are included"
        )
    return _PAPER_DIR


def _check_name(name) -> PaperDataSpec:
    if not isinstance(name, str) or name not in PAPER_DATASETS:
        raise ValueError(f"unknown paper data set {name!r}; choose one of {list(PAPER_DATASETS)}")
    return PAPER_DATASETS[name]


def load_paper(name: str) -> PaperData:
    """Load one of the paper's data sets from the copy shipped with divpred.

    Parameters
    ----------
    name : {"sd2", "sd3", "sd_pure", "sd2_pool", "sd3_pool", "emnist48"}
        See :data:`PAPER_DATASETS`. The SD files list their blocks in order (e.g. SD-2: rows
        0..699 from distribution 1, rows 700..999 from distribution 2), which gives ``source``
        and ``contamination``.

    Returns
    -------
    PaperData
        SD: ``X`` of shape (n, 40) (one-hot letters), ``y`` letters; n = 1000 (sd2, sd3,
        sd_pure), 2000 (sd2_pool), 3000 (sd3_pool); test 1000 rows. EMNIST: ``X`` of shape
        (600, 784) in [0, 1], ``y`` in {4, 8}; test 600 images; ``contamination`` None.
    """
    import numpy as np

    from ..data import PAPER_FILE_DISTRIBUTIONS, PAPER_SD_FILES, load_paper_emnist, load_sd_csv

    spec = _check_name(name)
    folder = paper_data_dir()
    train_path, test_path = folder / spec.train_file, folder / spec.test_file
    if name == "emnist48":
        train, test = load_paper_emnist(train_path), load_paper_emnist(test_path)
        return PaperData(name, train, test, None, None, spec.description, train_path, test_path)
    blocks = PAPER_SD_FILES[spec.train_file]
    source = np.repeat(np.arange(len(blocks)), [n for _, n in blocks])
    distributions = tuple(PAPER_FILE_DISTRIBUTIONS[d] for d, _ in blocks)
    train = load_sd_csv(train_path, source=source, distributions=distributions)
    test = load_sd_csv(
        test_path,
        source=np.zeros(PAPER_SD_FILES[spec.test_file][0][1], dtype=np.int64),
        distributions=(PAPER_FILE_DISTRIBUTIONS[1],),
    )
    return PaperData(
        name, train, test, source > 0, source, spec.description, train_path, test_path
    )


def load_paper_results(figure: str | int) -> pd.DataFrame:
    """The paper's own table behind one of its Figures 3-8 (shipped copy).

    Parameters
    ----------
    figure : {"fig3", ..., "fig8"} or int 3..8

    Returns
    -------
    pandas.DataFrame
        The paper's columns (header spaces stripped): Figures 3 and 5 ``a, E_acc, std_acc, E_p,
        std_p`` (one row per mislabel rate / |A2|), Figure 7 ``a, b, E_acc, std_acc, E_p,
        std_p``, Figures 4, 6 and 8 ``iteration, size, potential, TestAcc``.
    """
    from numbers import Integral

    from ..experiments.paper import read_paper_table

    if isinstance(figure, Integral) and not isinstance(figure, bool):
        figure = f"fig{int(figure)}"
    return read_paper_table(figure, paper_data_dir() / "results")
