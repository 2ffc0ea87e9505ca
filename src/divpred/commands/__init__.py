"""Sub-commands of the ``divpred`` command line."""
