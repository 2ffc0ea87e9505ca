"""The paper's public data sets and figure results, shipped inside the package.

:func:`load_paper` gives a training set, its clean test set and the known contamination mask;
:func:`load_paper_results` the paper's own table of a figure. The files are the authors' MIT
licensed release (``divpred/datasets/paper/LICENSE`` and ``NOTICE``).
"""

from ._paper import (
    PAPER_DATASETS,
    PaperData,
    PaperDataSpec,
    load_paper,
    load_paper_results,
    paper_data_dir,
)

__all__ = [
    "PAPER_DATASETS",
    "PaperData",
    "PaperDataSpec",
    "load_paper",
    "load_paper_results",
    "paper_data_dir",
]
