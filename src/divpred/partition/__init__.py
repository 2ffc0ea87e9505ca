r"""Partition a training set into homogeneous blocks by repeated variance-based purification.

The paper's Figure 1 (arXiv 2603.08649): purify Z to a pure block B1, take the removed points as
the next pool, purify again, and so on. The number of blocks is found from the data. Design,
evidence and measured results: ``docs/divide-and-predict.md``.

Algorithm
---------
0. *Input regions* (``input_split=True``). A node S of at least 2 ``min_block_size`` points
   whose V is at least ``split_min_variance`` V_null is split by k-means on x (K = 2, then 3);
   the split is kept when some part has V at most 1 / ``split_ratio`` of the V of random subsets
   of S of its size, i.e. x separates data of different rules; parts are split recursively.
   On the paper's SD data (every x from one distribution) no split is kept (statistic ~1.1).
1. In each region, ``pool`` starts as the region. *Purify until pure*: ``S = pool``; while S
   fails the purity test, replace it by its *core*, the points kept by
   :class:`~divpred.Purifier` at the knee of the V curve of S (:func:`confirmed_knee`). The
   first S that passes is the next block; the rest of the pool is the next pool.
2. Stop when the pool has fewer than ``min_block_size`` points, when no core of at least
   ``min_block_size`` points passes, or after ``max_blocks`` blocks. What is left is the
   *residue* (label -1).
3. With several input regions (``reassign=True``): the top-delta points of every block (its own
   purification to the knee) are reassigned to the block maximising gate(b | x) p_b(y | x),
   with experts and gate trained on the blocks' cores; this moves points that k-means put in
   the wrong region. The residue is not touched.

Purity test
-----------
A set S is *pure* when its V is not much larger than the V of resampled pure-looking subsets of
the same size (V grows with the size of a pure set: ~0.2 at 200 SD points, ~3 at 1000, while a
2-rule mixture has V ~ 30-60 at any size):

* ``"block"`` test (once a block has been found): ``r = V_s(S) / V_s(B)``, with B the largest
  block found so far, ``s = min(|S|, subsample |B|)`` and ``V_s(A)`` the median V of
  ``n_resamples`` random s-subsets of A (V of A itself when ``s = |A|``).
* ``"self"`` test (no block yet): ``r = V_s(S) / V_s(core(S))`` with ``s = subsample |core|``:
  does purification lower V far more than removing as many random points would? A set that
  passes is accepted only if its core passes too (look-ahead: a knee in the middle of a
  multi-block descent would otherwise pass a mixed set).

Both V's get the floor ``variance_floor * V_null``, V_null being V of the data with permuted
labels (the fully heterogeneous scale): V differences below 1 % of it are noise, which keeps the
ratio of two near-zero V's of small, nearly separable sets from blowing up. S passes when
``r <= purity_ratio`` (default 6). Measured (3 seeds, ``benchmarks/bench_dnp.py purity``): pure
SD sets of 200-1000 points give self ratios 1.05-2.02 and block ratios 0.69-1.17; mixtures with
>= 10 % of a second rule give self ratios >= 7.4 and block ratios >= 5.7; 5 % contamination of
1000 points gives 5.7-6.6, 3 % gives 3.9-4.8 (not detected).

Modules
-------
``_estimator``  :class:`Partitioner` and :func:`partition`: the loop over regions and blocks;
``_split``      step 0, the input regions;
``_purity``     the purity test and the search of one block (step 1);
``_core``       the core of a set (the purification that the tests and step 3 use);
``_knee``       :func:`confirmed_knee`;
``_reassign``   step 3;
``_context``    the data, model, seed and V of sets shared by one run;
``_state``      the checkpoint (folder and memo of every test);
``_result``     :class:`PartitionResult`, :func:`partition_scores`.
"""

from __future__ import annotations

from ._core import CORE_RULES
from ._estimator import Partitioner, partition
from ._knee import confirmed_knee
from ._result import RESIDUE, PartitionResult, partition_scores

__all__ = ["CORE_RULES", "RESIDUE", "PartitionResult", "Partitioner", "confirmed_knee",
           "partition", "partition_scores"]
