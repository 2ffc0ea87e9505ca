r"""``Purifier`` with ``MultinomialLogit(alpha="auto")``: the final model's L2 strength chosen on
the kept rows.

Cross-validated log-loss on the raw, contaminated data prefers the strong penalties that blind
the purification (``docs/purification.md`` 7.2), and a purification rerun with the alpha chosen
afterwards was as often worse as better (it changes what the stopping test sees). So:

1. the purification runs with alpha = ``REFERENCE_ALPHA`` (1e-4), the setting its stopping test
   was designed and measured with;
2. alpha_ = the grid value with the smallest 5-fold cross-validated log-loss on the rows it kept
   (:func:`~divpred.models._alpha.choose_alpha`; folds seeded like the calibration test),
   searched from 1e-4 with the purifier's fit as the start of every fold (``"auto-grid"``:
   every grid value; ``"auto-alo"``: approximate leave-one-out log-loss instead);
3. the final model is refitted on those rows with alpha_, warm-started from the purifier's fit
   (no refit when alpha_ is the reference: the purifier's own model stays; with
   ``"auto-alo"`` the criterion's own fit is the final model).

The kept rows are the same as with alpha = 1e-4; only ``model_`` changes.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from .models import MultinomialLogit
from .models._alpha import ALPHA_GRID, AUTO_METHODS, REFERENCE_ALPHA, auto_method, choose_alpha
from .models.multinomial import set_fitted_theta


def alpha_choice(model) -> tuple[str, str] | None:
    """The (method, search) of :func:`~divpred.models._alpha.choose_alpha` the purifier's model
    asks for (see ``AUTO_METHODS``), or None when it gives a number."""
    if not isinstance(model, MultinomialLogit):
        return None
    return auto_method(model.alpha, model.solver)


def refit_with_chosen_alpha(model, X: np.ndarray, y: np.ndarray, keep: np.ndarray,
                            seed: int, choice: tuple[str, str] = AUTO_METHODS["auto"],
                            ) -> tuple[float, np.ndarray, MultinomialLogit]:
    """(alpha_, the criterion of every value of ``ALPHA_GRID`` (NaN where the search did not
    go), shape (len(ALPHA_GRID),), and the final model).

    Parameters
    ----------
    model : MultinomialLogit fitted on the kept rows with alpha = ``REFERENCE_ALPHA``
        It starts the search (and the folds' first fits); the final refit starts from it.
    X : ndarray of shape (n, d); y : ndarray of shape (n,)
    keep : ndarray of bool, shape (n,), the rows the purification kept
    seed : int, seed of the cross-validation folds
    choice : (method, search) of :func:`~divpred.models._alpha.choose_alpha`
    """
    method, search = choice
    alpha, losses, chosen = choose_alpha(model, X[keep], y[keep], ALPHA_GRID,
                                         random_state=seed, method=method, search=search,
                                         start=model)
    if alpha == REFERENCE_ALPHA:
        return alpha, losses, model
    if chosen is not None:
        return alpha, losses, chosen
    final = clone(model).set_params(alpha=alpha, warm_start=model.solver != "adam")
    set_fitted_theta(final, model.theta_, model.classes_)  # the same minimiser, fewer steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        final.fit(X[keep], y[keep])
    return alpha, losses, final.set_params(warm_start=model.warm_start)
