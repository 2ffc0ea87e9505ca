"""divpred: Divide and Predict (Huang, Mortveit, Reidys, arXiv 2603.08649).

The public API. Core names are imported eagerly; the paper's shipped data
(``divpred.load_paper("sd2")``, ``divpred.load_paper_results("fig6")``), plotting, reports,
experiments, the Divide-and-Predict estimators, baselines and the optional Dask/PyTorch
backends are imported on first use (``divpred.plot_purification`` loads matplotlib only then;
``divpred.DaskPurifier`` needs ``pip install 'divpred[dask]'``, ``divpred.TorchInfluenceModel``
``'divpred[torch]'``).
"""

from __future__ import annotations

import importlib

from .data import (
    PAPER_DISTRIBUTIONS,
    PAPER_FILE_DISTRIBUTIONS,
    Dataset,
    SDData,
    SDDistribution,
    TabularEncoder,
    flip_labels,
    load_csv,
    load_dataset,
    load_digits_all,
    load_digits_pair,
    load_idx,
    load_npz,
    load_paper_emnist,
    load_sd_csv,
    make_sd,
    random_sd_distribution,
)
from .influence import (
    InfluenceSummary,
    influence_kurtosis,
    influence_matrix,
    influence_moments,
    influence_summary,
    influence_variance,
    self_influence,
)
from .models import MultinomialLogit
from .purify import Purifier
from .scores import DELTA_METHODS, delta_scores
from .stopping import STOP_RULES, choose_iteration

__version__ = "0.1.0"

# name -> module (relative to this package) that defines it, imported on first access
_LAZY = {
    "plot_purification": "plots",
    "plot_sweep": "plots",
    "plot_surface": "plots",
    "write_html_report": "report",
    "ReportSection": "report",
    "load_paper": "datasets",
    "load_paper_results": "datasets",
    "paper_data_dir": "datasets",
    "PaperData": "datasets",
    "PAPER_DATASETS": "datasets",
    "figure3": "experiments",
    "figure4": "experiments",
    "figure5": "experiments",
    "figure6": "experiments",
    "figure7": "experiments",
    "figure8": "experiments",
    "partition": "partition",
    "Partitioner": "partition",
    "PartitionResult": "partition",
    "PurifiedClassifier": "estimators",
    "DivideAndPredictClassifier": "estimators",
    "LatentClassEM": "baselines",
    "MixtureOfExperts": "baselines",
    "DaskPurifier": "backends",
    "TorchInfluenceModel": "backends",
    "purify_torch": "backends",
}
# Resolvable by name, but not part of ``from divpred import *``: they need optional packages.
_OPTIONAL = ("DaskPurifier", "TorchInfluenceModel", "purify_torch")

__all__ = [
    "DELTA_METHODS",
    "PAPER_DISTRIBUTIONS",
    "PAPER_FILE_DISTRIBUTIONS",
    "STOP_RULES",
    "Dataset",
    "InfluenceSummary",
    "MultinomialLogit",
    "Purifier",
    "SDData",
    "SDDistribution",
    "TabularEncoder",
    "choose_iteration",
    "delta_scores",
    "flip_labels",
    "influence_kurtosis",
    "influence_matrix",
    "influence_moments",
    "influence_summary",
    "influence_variance",
    "load_csv",
    "load_dataset",
    "load_digits_all",
    "load_digits_pair",
    "load_idx",
    "load_npz",
    "load_paper_emnist",
    "load_sd_csv",
    "make_sd",
    "random_sd_distribution",
    "self_influence",
    *(name for name in _LAZY if name not in _OPTIONAL),
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
