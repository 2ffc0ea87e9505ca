"""The Dask backend's parts; the public names are in :mod:`divpred.backends.dask_backend`."""
