"""The names that the command line offers as choices, free of heavy imports.

``divpred --help`` must list them without importing numpy, pandas or scikit-learn, so they live
here rather than beside their implementations (:mod:`divpred.scores`, :mod:`divpred.stopping`,
:mod:`divpred.models`, :mod:`divpred.experiments`,
:mod:`divpred.partition`), which re-export them.
"""

from __future__ import annotations

DELTA_METHODS = (
    "exact",
    "refit",
    "fast",
    "fast1",
    "fast2",
    "self_influence",
    "loss",
    "random",
)
"""Scoring methods of :func:`divpred.delta_scores`."""

STOP_RULES = ("auto", "none", "relative", "knee", "separable", "validation", "agreement")
"""Stopping rules of :class:`divpred.Purifier` (see :mod:`divpred.stopping`)."""

CORE_RULES = ("knee", "auto", "knee-excess")
"""How :class:`divpred.partition.Partitioner` chooses the core of a set (its ``core``)."""

SOLVERS = ("newton", "lbfgs", "adam")
"""Solvers of :class:`divpred.MultinomialLogit`."""

MODEL_KINDS = ("purified", "dnp")
"""Kinds of model that ``divpred fit`` trains (the keys of ``divpred._model_file.KIND_CLASSES``)."""

FIGURE_NAMES = ("fig3", "fig4", "fig5", "fig6", "fig7", "fig8")
"""The paper's figures that :mod:`divpred.experiments` reruns (the keys of its ``FIGURES``)."""
