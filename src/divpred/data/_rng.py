"""Turn a ``random_state`` argument into a :class:`numpy.random.Generator`."""

from __future__ import annotations

import numbers

import numpy as np

RandomStateLike = None | int | np.random.Generator | np.random.RandomState


def check_generator(random_state: RandomStateLike) -> np.random.Generator:
    """Return a numpy Generator for ``random_state``, or raise ValueError.

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        ``None`` gives fresh OS entropy; a non-negative int gives a reproducible stream; a
        Generator is used as is (its state advances, like scikit-learn's convention); a legacy
        RandomState seeds a new Generator from one draw of it.

    Returns
    -------
    numpy.random.Generator
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(int(random_state.randint(0, 2**31 - 1)))
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer; got {random_state}")
        return np.random.default_rng(int(random_state))
    raise ValueError(
        "random_state must be None, a non-negative int, a numpy Generator or a RandomState; "
        f"got {type(random_state).__name__}"
    )
