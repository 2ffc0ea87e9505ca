"""The paper's Section 4 experiments (Figures 3-8), one plain function per figure.

Every function takes keyword arguments ``quick`` (reduced sizes/replications), ``random_state``
(an int; all data draws, splits and label flips derive from it), ``progress`` (tqdm on stderr),
``model`` (an unfitted estimator such as :class:`~divpred.MultinomialLogit`; default
:func:`default_model`, i.e. L2 1e-4, damping 0.01, Newton; pass
``MultinomialLogit(solver="adam", alpha=0.0)`` for the paper's training) and ``data_dir`` (a
folder with the paper's data files), plus ``method``/``k``/``max_iter`` for the purification
figures. Each returns a dict with at least

``figure``
    ``"fig3"`` ... ``"fig8"``.
``table``
    pandas DataFrame in the paper's columns (:data:`FIGURE_COLUMNS`), possibly followed by
    extra columns of ours.
``data``, ``settings``, ``seconds``
    What data were used, the parameters, and the wall time.

BLAS runs single-threaded inside the experiments (faster on small shared machines).
"""

from ._common import default_model
from .paper import (
    FIGURE_COLUMNS,
    FIGURE_TITLES,
    PAPER_CAPTION_VALUES,
    PAPER_RESULT_FILES,
    headline,
    read_paper_table,
)
from .purification import figure4, figure6, figure8, purification_table
from .sweeps import figure3, figure5, figure7

FIGURES = {
    "fig3": figure3,
    "fig4": figure4,
    "fig5": figure5,
    "fig6": figure6,
    "fig7": figure7,
    "fig8": figure8,
}
"""Figure name -> experiment function."""

PURIFICATION_FIGURES = ("fig4", "fig6", "fig8")

__all__ = [
    "FIGURES",
    "FIGURE_COLUMNS",
    "FIGURE_TITLES",
    "PAPER_CAPTION_VALUES",
    "PAPER_RESULT_FILES",
    "PURIFICATION_FIGURES",
    "default_model",
    "figure3",
    "figure4",
    "figure5",
    "figure6",
    "figure7",
    "figure8",
    "headline",
    "purification_table",
    "read_paper_table",
]
