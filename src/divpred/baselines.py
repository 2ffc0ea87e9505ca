r"""Baselines for block discovery, in numpy only: a latent-class EM and a mixture of experts.

:class:`LatentClassEM`
    Latent class analysis: every column (the categorical features and the label as one more
    column) is independent of the others given a latent class k,

    .. math:: p(x, y) = \sum_k \pi_k \prod_j \theta_{k j}(x_j) \; \theta_{k y}(y),

    fitted by EM with a symmetric Dirichlet smoothing of the categorical tables. The number of
    classes is chosen by BIC when not given. Blocks are the most probable latent class.

:class:`MixtureOfExperts`
    Softmax gate over x and multinomial-logistic experts,

    .. math:: p(y | x) = \sum_k g_k(x) \, p_k(y | x), \quad g = \mathrm{softmax}(V [x; 1]),

    trained by EM (Jordan and Jacobs): the E-step computes responsibilities
    h_ik proportional to g_k(x_i) p_k(y_i | x_i); the M-step refits the gate to the soft targets h
    and each expert to y with weights h_{.k}, each by a few Newton steps of an L2-penalised
    softmax regression. Block assignments of training points use the label (argmax_k h_ik); at
    prediction time only the gate can be used. When the blocks are not distinguishable from x
    (the paper's SD data) the gate stays near the block proportions and the prediction is the
    average of the experts: the failure mode the paper's introduction describes.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from threadpoolctl import threadpool_limits

from ._validation import check_positive_int

__all__ = ["LatentClassEM", "MixtureOfExperts"]


# ----------------------------------------------------------------------------- helpers
def _logsumexp(a: np.ndarray, axis: int = 1) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return logits - _logsumexp(logits)[:, None]


def _rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, Integral)
                                and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state must be an int, a numpy Generator or None; got {random_state!r}"
    )


def _check_positive_int(value, name, allow_none=False):
    if value is None and allow_none:
        return
    check_positive_int(value, name)


def _check_nonneg_real(value, name):
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")


def _as_2d(X, name="X") -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_columns); got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    return arr


def _as_labels(y, n) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"y must be 1-dimensional with {n} entries; got shape {arr.shape}")
    return arr


def _fit_softmax(Xa, T, w, alpha, theta, n_steps, tol=1e-8):
    """Newton steps on sum_i w_i CE(T_i, softmax(theta x_i)) / sum(w) + alpha/2 ||theta||^2.

    Xa (n, D) augmented inputs, T (n, C) target distributions, w (n,) weights, theta (C, D) start.
    Full C x D parametrisation; alpha > 0 makes the Hessian positive definite.
    """
    n, D = Xa.shape
    C = T.shape[1]
    wsum = max(float(w.sum()), 1e-300)
    wn = w / wsum
    tw = T.sum(axis=1)

    def objective(th):
        logp = _log_softmax(Xa @ th.T)
        return -np.sum(wn * np.sum(T * logp, axis=1)) + 0.5 * alpha * np.sum(th * th)

    f = objective(theta)
    for _ in range(n_steps):
        P = _softmax(Xa @ theta.T)
        R = P * tw[:, None] - T  # gradient of CE w.r.t. logits (targets may not sum to 1)
        grad = (R * wn[:, None]).T @ Xa + alpha * theta  # (C, D)
        if np.max(np.abs(grad)) < tol:
            break
        H = np.empty((C, D, C, D))
        for a in range(C):
            for b in range(a, C):
                wab = wn * tw * (P[:, a] * ((a == b) - P[:, b]))
                block = (Xa * wab[:, None]).T @ Xa
                H[a, :, b, :] = block
                H[b, :, a, :] = block.T
        H = H.reshape(C * D, C * D)
        H[np.diag_indices_from(H)] += alpha
        try:
            step = np.linalg.solve(H, grad.ravel()).reshape(C, D)
        except np.linalg.LinAlgError:
            step = grad / (alpha + 1.0)
        t = 1.0
        slope = -float(grad.ravel() @ step.ravel())
        while True:
            cand = theta - t * step
            f_new = objective(cand)
            if f_new <= f + 1e-4 * t * slope or t < 1e-8:
                break
            t *= 0.5
        if f_new > f:
            break
        theta, f = cand, f_new
    return theta


# ----------------------------------------------------------------------------- LCA
class LatentClassEM:
    """Latent class model over categorical columns, the label as one more column.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of latent classes (blocks). None chooses it by BIC over
        1..``max_components``.
    max_components : int, default=6
    n_init : int, default=5
        Random restarts per number of components; the highest log-likelihood is kept.
    max_iter : int, default=300
    tol : float, default=1e-6
        Stop when the mean log-likelihood per point improves by less than this.
    smoothing : float, default=0.5
        Dirichlet pseudo-count added to every cell of the categorical tables.
    random_state : int, Generator or None

    Attributes
    ----------
    n_components_ : int
    weights_ : ndarray (K,)
        Class proportions pi_k.
    log_tables_ : list of ndarray (K, C_j)
        log theta_kj for every column (features first, the label last).
    categories_ : list of ndarray
        Categories of every column, in code order.
    labels_ : ndarray (n,)
        Most probable class of every training row.
    log_likelihood_ : float
        Total log-likelihood of the training data.
    bic_ : dict K -> BIC (only the fitted K when ``n_components`` was given).
    """

    def __init__(self, n_components=None, max_components=6, n_init=5, max_iter=300, tol=1e-6,
                 smoothing=0.5, random_state=None):
        self.n_components = n_components
        self.max_components = max_components
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.random_state = random_state

    def get_params(self, deep=True) -> dict:
        return {k: getattr(self, k) for k in ("n_components", "max_components", "n_init",
                                               "max_iter", "tol", "smoothing", "random_state")}

    def _columns(self, X, y) -> np.ndarray:
        X = _as_2d(X)
        cols = [X[:, j] for j in range(X.shape[1])]
        if y is not None:
            cols.append(_as_labels(y, X.shape[0]))
        return cols

    def _encode(self, cols, fit: bool) -> np.ndarray:
        if fit:
            self.categories_ = []
        codes = np.empty((cols[0].shape[0], len(cols)), dtype=np.int64)
        for j, col in enumerate(cols):
            col = np.asarray(col)
            if fit:
                cats, code = np.unique(col, return_inverse=True)
                self.categories_.append(cats)
            else:
                cats = self.categories_[j]
                code = np.searchsorted(cats, col)
                code = np.clip(code, 0, cats.shape[0] - 1)
                bad = cats[code] != col
                if np.any(bad):
                    raise ValueError(
                        f"column {j} has values not seen at fit: {np.unique(col[bad])[:5].tolist()}"
                    )
            codes[:, j] = code
        return codes

    def _onehot(self, codes) -> np.ndarray:
        sizes = [c.shape[0] for c in self.categories_]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        Z = np.zeros((codes.shape[0], int(np.sum(sizes))))
        rows = np.arange(codes.shape[0])[:, None]
        Z[rows, codes + offsets[None, :]] = 1.0
        return Z

    def fit(self, X, y) -> LatentClassEM:
        """Fit on categorical features X (n, p) and labels y (n,).

        Returns
        -------
        self
        """
        for name in ("max_components", "n_init", "max_iter"):
            _check_positive_int(getattr(self, name), name)
        _check_positive_int(self.n_components, "n_components", allow_none=True)
        _check_nonneg_real(self.tol, "tol")
        _check_nonneg_real(self.smoothing, "smoothing")
        cols = self._columns(X, y)
        codes = self._encode(cols, fit=True)
        Z = self._onehot(codes)
        sizes = np.array([c.shape[0] for c in self.categories_])
        n = Z.shape[0]
        rng = _rng(self.random_state)
        ks = ([self.n_components] if self.n_components is not None
              else list(range(1, self.max_components + 1)))
        best_by_k, self.bic_ = {}, {}
        for K in ks:
            with threadpool_limits(limits=1, user_api="blas"):  # small GEMMs: 1 thread is faster
                fits = [self._em(Z, sizes, K, rng) for _ in range(self.n_init if K > 1 else 1)]
            ll, logpi, logtab = max(fits, key=lambda f: f[0])
            n_params = (K - 1) + K * int(np.sum(sizes - 1))
            self.bic_[K] = float(-2 * ll + n_params * np.log(n))
            best_by_k[K] = (ll, logpi, logtab)
        K = min(self.bic_, key=self.bic_.get)
        ll, logpi, logtab = best_by_k[K]
        self.n_components_ = K
        self.weights_ = np.exp(logpi)
        self._logtab = logtab
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.log_tables_ = [logtab[:, offsets[j]:offsets[j + 1]] for j in range(len(sizes))]
        self.log_likelihood_ = float(ll)
        self.labels_ = np.argmax(self._log_joint(Z), axis=1)
        return self

    def _log_joint(self, Z) -> np.ndarray:
        return np.log(self.weights_)[None, :] + Z @ self._logtab.T

    def _em(self, Z, sizes, K, rng):
        n = Z.shape[0]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        R = rng.dirichlet(np.ones(K), size=n)
        prev = -np.inf
        ll = -np.inf
        for _ in range(self.max_iter):
            # M-step
            Nk = R.sum(axis=0) + 1e-12
            logpi = np.log(Nk / n)
            counts = R.T @ Z + self.smoothing  # (K, total categories)
            logtab = np.empty_like(counts)
            for j in range(len(sizes)):
                sl = slice(offsets[j], offsets[j + 1])
                logtab[:, sl] = np.log(counts[:, sl] / counts[:, sl].sum(axis=1, keepdims=True))
            # E-step
            L = logpi[None, :] + Z @ logtab.T
            lse = _logsumexp(L)
            ll = float(lse.sum())
            R = np.exp(L - lse[:, None])
            if ll - prev < self.tol * n:
                break
            prev = ll
        return ll, logpi, logtab

    def predict_proba(self, X, y) -> np.ndarray:
        """Posterior class probabilities of rows (X, y), shape (n, K)."""
        self._check_fitted()
        Z = self._onehot(self._encode(self._columns(X, y), fit=False))
        L = self._log_joint(Z)
        return np.exp(L - _logsumexp(L)[:, None])

    def predict(self, X, y) -> np.ndarray:
        """Most probable latent class (block) of rows (X, y)."""
        return np.argmax(self.predict_proba(X, y), axis=1)

    def predict_label(self, X) -> np.ndarray:
        """Most probable label given the features only: argmax_y sum_k pi_k p(x|k) p(y|k)."""
        self._check_fitted()
        cols = self._columns(X, None)
        if len(cols) != len(self.categories_) - 1:
            raise ValueError(f"X has {len(cols)} columns; expected {len(self.categories_) - 1}")
        saved = self.categories_
        self.categories_ = saved[:-1]
        try:
            Z = self._onehot(self._encode(cols, fit=False))
        finally:
            self.categories_ = saved
        sizes = np.array([c.shape[0] for c in saved])
        logx = self._logtab[:, : int(sizes[:-1].sum())]
        L = np.log(self.weights_)[None, :] + Z @ logx.T  # (n, K)
        scores = _logsumexp(L[:, :, None] + self.log_tables_[-1][None, :, :], axis=1)
        return saved[-1][np.argmax(scores, axis=1)]

    def _check_fitted(self):
        if not hasattr(self, "weights_"):
            raise ValueError("this LatentClassEM is not fitted yet; call fit first")


# ----------------------------------------------------------------------------- MoE
class MixtureOfExperts:
    """Softmax-gated mixture of multinomial-logistic experts, trained by EM.

    Parameters
    ----------
    n_components : int or None, default=2
        Number of experts; None chooses it by BIC over 1..``max_components``.
    max_components : int, default=4
    alpha : float, default=1e-4
        L2 strength of the experts (as in :class:`~divpred.MultinomialLogit`).
    gate_alpha : float, default=1e-3
        L2 strength of the gate.
    n_init : int, default=3
        Random restarts (random soft responsibilities); the highest log-likelihood is kept.
    max_iter : int, default=100
        EM iterations.
    newton_steps : int, default=3
        Newton steps per M-step fit (warm-started).
    tol : float, default=1e-5
        Stop when the mean log-likelihood improves by less than this.
    random_state : int, Generator or None

    Attributes
    ----------
    classes_ : ndarray (C,)
    n_components_ : int
    gate_ : ndarray (K, d + 1)
    experts_ : ndarray (K, C, d + 1)
    labels_ : ndarray (n,)
        Block of every training row: argmax_k of the posterior responsibility (uses the label).
    responsibilities_ : ndarray (n, K)
    log_likelihood_ : float
    bic_ : dict K -> BIC
    """

    def __init__(self, n_components=2, max_components=4, alpha=1e-4, gate_alpha=1e-3, n_init=3,
                 max_iter=100, newton_steps=3, tol=1e-5, random_state=None):
        self.n_components = n_components
        self.max_components = max_components
        self.alpha = alpha
        self.gate_alpha = gate_alpha
        self.n_init = n_init
        self.max_iter = max_iter
        self.newton_steps = newton_steps
        self.tol = tol
        self.random_state = random_state

    def get_params(self, deep=True) -> dict:
        return {k: getattr(self, k) for k in (
            "n_components", "max_components", "alpha", "gate_alpha", "n_init", "max_iter",
            "newton_steps", "tol", "random_state")}

    @staticmethod
    def _augment(X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional (n_samples, n_features); got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values")
        return np.hstack([X, np.ones((X.shape[0], 1))])

    def fit(self, X, y) -> MixtureOfExperts:
        """Fit by EM on numeric X (n, d) and labels y (n,).

        Returns
        -------
        self
        """
        for name in ("max_components", "n_init", "max_iter", "newton_steps"):
            _check_positive_int(getattr(self, name), name)
        _check_positive_int(self.n_components, "n_components", allow_none=True)
        for name in ("alpha", "gate_alpha", "tol"):
            _check_nonneg_real(getattr(self, name), name)
        if self.alpha <= 0 or self.gate_alpha <= 0:
            raise ValueError("alpha and gate_alpha must be > 0 (the M-step needs them)")
        Xa = self._augment(_as_2d(X))
        y = _as_labels(y, Xa.shape[0])
        self.classes_, yidx = np.unique(y, return_inverse=True)
        if self.classes_.shape[0] < 2:
            raise ValueError("y has 1 class; a classifier needs at least 2 classes")
        Y = np.eye(self.classes_.shape[0])[yidx]
        n, D = Xa.shape
        C = Y.shape[1]
        rng = _rng(self.random_state)
        ks = ([self.n_components] if self.n_components is not None
              else list(range(1, self.max_components + 1)))
        self.bic_, best_by_k = {}, {}
        for K in ks:
            with threadpool_limits(limits=1, user_api="blas"):  # small GEMMs: 1 thread is faster
                fits = [self._em(Xa, Y, K, rng) for _ in range(self.n_init if K > 1 else 1)]
            best = max(fits, key=lambda f: f[0])
            n_params = (K - 1) * D + K * (C - 1) * D
            self.bic_[K] = float(-2 * best[0] + n_params * np.log(n))
            best_by_k[K] = best
        K = min(self.bic_, key=self.bic_.get)
        ll, gate, experts, R = best_by_k[K]
        self.n_components_ = K
        self.gate_ = gate
        self.experts_ = experts
        self.responsibilities_ = R
        self.labels_ = np.argmax(R, axis=1)
        self.log_likelihood_ = float(ll)
        self.n_features_in_ = D - 1
        return self

    def _log_terms(self, Xa, Y, gate, experts) -> np.ndarray:
        """log g_k(x_i) + log p_k(y_i | x_i), shape (n, K)."""
        logg = _log_softmax(Xa @ gate.T)
        logp = np.stack([np.sum(Y * _log_softmax(Xa @ experts[k].T), axis=1)
                         for k in range(experts.shape[0])], axis=1)
        return logg + logp

    def _em(self, Xa, Y, K, rng):
        n, D = Xa.shape
        C = Y.shape[1]
        R = rng.dirichlet(np.ones(K), size=n)
        gate = np.zeros((K, D))
        experts = np.zeros((K, C, D))
        ones = np.ones(n)
        prev = -np.inf
        ll = -np.inf
        for it in range(self.max_iter):
            steps = self.newton_steps if it else max(self.newton_steps, 8)
            if K > 1:
                gate = _fit_softmax(Xa, R, ones, self.gate_alpha, gate, steps)
            for k in range(K):
                experts[k] = _fit_softmax(Xa, Y, R[:, k] + 1e-12, self.alpha, experts[k], steps)
            L = self._log_terms(Xa, Y, gate, experts)
            lse = _logsumexp(L)
            ll = float(lse.sum())
            R = np.exp(L - lse[:, None])
            if ll - prev < self.tol * n:
                break
            prev = ll
        return ll, gate, experts.copy(), R

    def _check_fitted(self):
        if not hasattr(self, "experts_"):
            raise ValueError("this MixtureOfExperts is not fitted yet; call fit first")

    def _checked(self, X) -> np.ndarray:
        self._check_fitted()
        Xa = self._augment(X)
        if Xa.shape[1] - 1 != self.n_features_in_:
            raise ValueError(f"X has {Xa.shape[1] - 1} features; expected {self.n_features_in_}")
        return Xa

    def gate_proba(self, X) -> np.ndarray:
        """Gate weights g_k(x), shape (n, K)."""
        return _softmax(self._checked(X) @ self.gate_.T)

    def predict_proba(self, X) -> np.ndarray:
        """p(y | x) = sum_k g_k(x) p_k(y | x), shape (n, C)."""
        Xa = self._checked(X)
        g = _softmax(Xa @ self.gate_.T)
        P = np.stack([_softmax(Xa @ e.T) for e in self.experts_], axis=1)  # (n, K, C)
        return np.einsum("nk,nkc->nc", g, P)

    def predict(self, X) -> np.ndarray:
        """Most probable label."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_blocks(self, X, y=None) -> np.ndarray:
        """Block of each row: the posterior argmax with labels y, the gate's argmax without."""
        Xa = self._checked(X)
        if y is None:
            return np.argmax(Xa @ self.gate_.T, axis=1)
        y = _as_labels(y, Xa.shape[0])
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, self.classes_.shape[0] - 1)
        if np.any(self.classes_[idx] != y):
            raise ValueError("y has labels not seen at fit")
        Y = np.eye(self.classes_.shape[0])[idx]
        return np.argmax(self._log_terms(Xa, Y, self.gate_, self.experts_), axis=1)

    def score(self, X, y) -> float:
        """Accuracy of :meth:`predict`."""
        return float(np.mean(self.predict(X) == _as_labels(y, np.asarray(X).shape[0])))
