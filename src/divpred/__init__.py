"""divpred: Divide and Predict (Huang, Mortveit, Reidys, arXiv 2603.08649)."""

from .influence import (
    InfluenceSummary,
    influence_matrix,
    influence_moments,
    influence_summary,
    influence_variance,
    self_influence,
)
from .models import MultinomialLogit
from .purify import Purifier
from .scores import DELTA_METHODS, delta_scores

__version__ = "0.1.0"

__all__ = [
    "DELTA_METHODS",
    "InfluenceSummary",
    "MultinomialLogit",
    "Purifier",
    "delta_scores",
    "influence_matrix",
    "influence_moments",
    "influence_summary",
    "influence_variance",
    "self_influence",
]
