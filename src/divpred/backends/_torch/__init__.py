"""The PyTorch adapter's parts; the public names are in :mod:`divpred.backends.torch_adapter`."""
