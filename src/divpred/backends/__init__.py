"""Optional compute backends.

* :mod:`divpred.backends.dask_backend` (``pip install 'divpred[dask]'``): V[X], moments,
  self-influence, fast1 delta scores, Newton fits and purification on row-blocked data that
  may be larger than memory, on any dask scheduler (``distributed.Client`` included).
* :mod:`divpred.backends.torch_adapter` (``pip install 'divpred[torch]'``): the same
  quantities for any ``torch.nn.Module`` classifier.

Neither library is imported until one of its names is used, so ``import divpred`` works
without them.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "DaskPurifier": "dask_backend",
    "TorchInfluenceModel": "torch_adapter",
    "purify_torch": "torch_adapter",
    "train_classifier": "torch_adapter",
}

__all__ = ["dask_backend", "torch_adapter", *_LAZY]


def __getattr__(name: str):
    if name in ("dask_backend", "torch_adapter"):
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
