"""Training a torch classifier the paper's way, and purification with it: train, score with
the fast delta, remove the top k, retrain from scratch (same seed)."""

from __future__ import annotations

import time

import numpy as np
import torch

from .model import TorchInfluenceModel
from .network import default_device


def train_classifier(
    module,
    X,
    y,
    *,
    epochs: int = 1000,
    loss_tol: float = 0.1,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    device=None,
):
    """The paper's training: Adam, shuffled mini-batches, stop when an epoch's mean loss is
    <= ``loss_tol`` or after ``epochs``. ``weight_decay`` adds (weight_decay / 2) ||theta||^2
    to the loss (pass the same value as ``alpha`` to :class:`TorchInfluenceModel`).
    Returns the number of epochs run.
    """
    device = torch.device(device) if device is not None else default_device()
    module.to(device).train()
    dtype = next(module.parameters()).dtype
    X = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    n = X.shape[0]
    epoch = 0
    for epoch in range(1, epochs + 1):  # noqa: B007 (returned)
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(X[idx]), y[idx])
            if weight_decay:
                loss = loss + 0.5 * weight_decay * sum((p * p).sum() for p in module.parameters())
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.shape[0]
        if total / n <= loss_tol:
            break
    module.eval()
    return epoch


def purify_torch(
    make_module,
    X,
    y,
    *,
    X_test=None,
    y_test=None,
    k: int = 10,
    n_iter: int = 10,
    method: str = "fast1",
    train_kwargs=None,
    influence_kwargs=None,
    seed: int = 0,
    progress=None,
):
    """Purification with a torch classifier: train, score with the fast delta, remove the top
    ``k``, retrain from scratch (same seed), ``n_iter`` times.

    Parameters
    ----------
    make_module : callable () -> nn.Module, a fresh (seeded) network each call
    X, y : training data (numpy), any labels (mapped to 0..C-1)
    X_test, y_test : optional held-out data for the accuracy curve

    Returns
    -------
    pandas.DataFrame with ``iteration``, ``size``, ``variance``, ``test_accuracy``,
    ``train_epochs``, ``removed``, ``seconds_train``, ``seconds_score``.
    """
    import pandas as pd

    classes, yidx = np.unique(np.asarray(y), return_inverse=True)
    X = np.asarray(X)
    test = None
    if X_test is not None:
        test = (np.asarray(X_test), np.searchsorted(classes, np.asarray(y_test)))
    train_kwargs = dict(train_kwargs or {})
    influence_kwargs = dict(influence_kwargs or {})
    keep = np.ones(X.shape[0], dtype=bool)
    rows = []
    for it in range(n_iter + 1):
        idx = np.nonzero(keep)[0]
        torch.manual_seed(seed)
        module = make_module()
        t0 = time.perf_counter()
        epochs = train_classifier(module, X[idx], yidx[idx], seed=seed, **train_kwargs)
        t1 = time.perf_counter()
        model = TorchInfluenceModel(module, **influence_kwargs)
        last = it == n_iter
        scores, info = model.delta_scores(
            X[idx], yidx[idx], "self_influence" if last else method, return_info=True
        )
        top = [] if last else idx[np.argsort(-scores, kind="stable")[:k]].tolist()
        rec = {"iteration": it, "size": int(idx.size), "variance": info["variance"],
               "train_epochs": epochs, "removed": top, "seconds_train": t1 - t0,
               "seconds_score": time.perf_counter() - t1, "solver": info["solver"],
               "hessian": info["hessian"]}
        if test is not None:
            with torch.no_grad():
                p = next(module.parameters())
                logits = module(torch.as_tensor(test[0], dtype=p.dtype, device=p.device))
                rec["test_accuracy"] = float(
                    (logits.argmax(1).cpu().numpy() == test[1]).mean()
                )
        rows.append(rec)
        if progress is not None:
            progress(rec)
        keep[top] = False
        del model
    return pd.DataFrame.from_records(rows)
