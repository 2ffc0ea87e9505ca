"""divpred: Divide and Predict (Huang, Mortveit, Reidys, arXiv 2603.08649).

The public API. Every name is imported on first use, so that ``import divpred`` (and with it
``divpred --help``) does not load numpy, pandas, scikit-learn or matplotlib; ``from divpred
import Purifier`` works as usual. The paper's data ship inside the package
(``divpred.load_paper("sd2")``, ``divpred.load_paper_results("fig6")``).
``divpred.DaskPurifier`` needs ``pip install 'divpred[dask]'``, ``divpred.TorchInfluenceModel``
``'divpred[torch]'``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULE_NAMES = {
    "_choices": ("DELTA_METHODS", "STOP_RULES"),
    "data": (
        "PAPER_DISTRIBUTIONS",
        "PAPER_FILE_DISTRIBUTIONS",
        "Dataset",
        "SDData",
        "SDDistribution",
        "TabularEncoder",
        "flip_labels",
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
    ),
    "influence": (
        "InfluenceSummary",
        "influence_kurtosis",
        "influence_matrix",
        "influence_moments",
        "influence_summary",
        "influence_variance",
        "self_influence",
    ),
    "models": ("MultinomialLogit",),
    "purify": ("Purifier",),
    "scores": ("delta_scores",),
    "stopping": ("choose_iteration",),
    "plots": ("plot_purification", "plot_sweep", "plot_surface"),
    "report": ("write_html_report", "ReportSection"),
    "datasets": ("load_paper", "load_paper_results", "paper_data_dir", "PaperData",
                 "PAPER_DATASETS"),
    "purification_report": ("write_purification_report",),
    "experiments": ("figure3", "figure4", "figure5", "figure6", "figure7", "figure8"),
    "partition": ("partition", "Partitioner", "PartitionResult"),
    "estimators": ("PurifiedClassifier", "DivideAndPredictClassifier"),
    "baselines": ("LatentClassEM", "MixtureOfExperts"),
    "backends": ("DaskPurifier", "TorchInfluenceModel", "purify_torch"),
}
# name -> module (relative to this package) that defines it, imported on first access
_LAZY = {name: module for module, names in _SUBMODULE_NAMES.items() for name in names}
# Resolvable by name, but not part of ``from divpred import *``: they need optional packages.
_OPTIONAL = ("DaskPurifier", "TorchInfluenceModel", "purify_torch")

__all__ = sorted(name for name in _LAZY if name not in _OPTIONAL)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
