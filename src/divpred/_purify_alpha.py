r"""``Purifier`` with ``MultinomialLogit(alpha="auto")``: the final model's L2 strength chosen on
the kept rows.

Cross-validated log-loss on the raw, contaminated data prefers the strong penalties that blind
the purification (``docs/purification.md`` 7.2), and a purification rerun with the alpha chosen
afterwards was as often worse as better (it changes what the stopping test sees). So:

1. the purification runs with alpha = ``REFERENCE_ALPHA`` (1e-4), the setting its stopping test
   was designed and measured with;
2. alpha_ = the grid value with the smallest 5-fold cross-validated log-loss on the rows it kept
   (:func:`~divpred.models._alpha.choose_alpha`; folds seeded like the calibration test);
3. the final model is refitted on those rows with alpha_ (no refit when alpha_ is the
   reference: the purifier's own model stays).

The kept rows are the same as with alpha = 1e-4; only ``model_`` changes.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from .models import MultinomialLogit
from .models._alpha import ALPHA_GRID, REFERENCE_ALPHA, choose_alpha


def chooses_alpha(model) -> bool:
    """Whether the purifier's model asks for ``alpha="auto"``."""
    return isinstance(model, MultinomialLogit) and isinstance(model.alpha, str) and (
        model.alpha == "auto")


def refit_with_chosen_alpha(model, X: np.ndarray, y: np.ndarray, keep: np.ndarray,
                            seed: int) -> tuple[float, np.ndarray, MultinomialLogit]:
    """(alpha_, the log-loss of every value of ``ALPHA_GRID``, shape (len(ALPHA_GRID),), and
    the final model).

    Parameters
    ----------
    model : MultinomialLogit fitted on the kept rows with alpha = ``REFERENCE_ALPHA``
    X : ndarray of shape (n, d); y : ndarray of shape (n,)
    keep : ndarray of bool, shape (n,), the rows the purification kept
    seed : int, seed of the cross-validation folds
    """
    alpha, losses = choose_alpha(model, X[keep], y[keep], ALPHA_GRID, random_state=seed)
    if alpha == REFERENCE_ALPHA:
        return alpha, losses, model
    final = clone(model).set_params(alpha=alpha, warm_start=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        final.fit(X[keep], y[keep])
    return alpha, losses, final
