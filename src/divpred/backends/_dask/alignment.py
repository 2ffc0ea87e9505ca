"""Aligned copies of the arrays a task receives from another process, so that worker processes
compute the same bits as threads.

On worker processes (``distributed.LocalCluster(processes=True)``, any real cluster) the
arrays in a task's arguments are deserialized views into the received message, and a small one
may start at an address that is not a multiple of 8 (``flags.aligned`` False), an address that
changes from run to run: the weights ``theta`` were unaligned in 64 of the 68 Newton-pass tasks
of one DaskPurifier run (n = 20 000, 4 blocks, 1 worker). ``np.matmul`` (``@``) with an
unaligned operand rounds otherwise than BLAS (``np.dot`` of the same operands gives the bits of
the aligned case): ``Xa @ theta.T`` differed by up to 2e-11 relative on entries of a
5 000 x 41 block, and so then did the block sums, the fits and the scores. Two uninterrupted
fits on fresh worker processes differed by 1e-14 to 1e-13 in the weights (and, at n = 20 000,
in the order of two near-tied rows of a batch), while threads, which get the caller's arrays,
were bitwise identical. Only alignment matters, not the address modulo 64: ``theta``, ``Hcol``,
``Hc``, ``Hinv``, ``HSH``, ``M`` and the row block at each of the 64 byte offsets from a 64-byte
boundary gave, in every block function of :mod:`.influence`, the bits of the aligned case at
the 8 offsets that are multiples of 8; the row block gave them at every offset (it is only
copied into ``Xa`` and compared, so it is left as it arrives).

So every task aligns its parameters on entry (:func:`aligned`: a copy of an unaligned array
only; 0.3 ms per task with every array of the fast1 map's parameters unaligned at m = 123,
against 170-220 ms for a block of 10^5 rows), and the client aligns what it receives from the
workers (:func:`.engine._compute`). The threads path computes what it did (its arrays were
aligned), and worker processes now give its bits.
"""

from __future__ import annotations

import numpy as np


def aligned(obj):
    """``obj`` with every unaligned numpy array in it replaced by an aligned copy.

    Parameters
    ----------
    obj : an array, or dicts, lists and tuples of them (nested), or anything else

    Returns
    -------
    The same structure (new containers, the same aligned arrays and other objects); an array
    that is aligned is returned as it is, an unaligned one copied in its memory order.
    """
    if isinstance(obj, np.ndarray):
        return obj if obj.flags.aligned else obj.copy(order="K")
    if isinstance(obj, dict):
        return {key: aligned(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [aligned(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(aligned(value) for value in obj)
    return obj
