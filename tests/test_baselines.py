"""Baselines: latent-class EM over categorical columns and a mixture of experts trained by EM."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from divpred import MultinomialLogit
from divpred.baselines import LatentClassEM, MixtureOfExperts

from .test_partition import regions, two_rules


def latent_class_data(n=400, seed=0):
    """Two latent classes with different categorical profiles on 6 columns (+ a label)."""
    rng = np.random.default_rng(seed)
    z = (rng.random(n) < 0.6).astype(int)
    profiles = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    cats = np.array(["a", "b", "c"])
    X = np.stack([cats[[rng.choice(3, p=profiles[k]) for k in z]] for _ in range(6)], axis=1)
    y = np.where(rng.random(n) < 0.85, z, 1 - z)  # the label follows the class
    return X, np.array(["no", "yes"])[y], z


# ------------------------------------------------------------------------------ LCA
def test_latent_class_em_recovers_classes_and_bic_picks_two():
    X, y, z = latent_class_data()
    em = LatentClassEM(random_state=0, max_components=4).fit(X, y)
    assert em.n_components_ == 2
    assert set(em.bic_) == {1, 2, 3, 4} and min(em.bic_, key=em.bic_.get) == 2
    assert adjusted_rand_score(z, em.labels_) > 0.8
    np.testing.assert_allclose(em.weights_.sum(), 1.0)
    assert len(em.log_tables_) == 7  # 6 features and the label
    np.testing.assert_allclose([np.exp(t).sum(axis=1) for t in em.log_tables_], 1.0)
    P = em.predict_proba(X, y)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(em.predict(X, y), em.labels_)
    assert np.mean(em.predict_label(X) == y) > 0.75


def test_latent_class_em_is_deterministic_and_validates():
    X, y, _ = latent_class_data(200, seed=1)
    a = LatentClassEM(n_components=2, random_state=3).fit(X, y)
    b = LatentClassEM(n_components=2, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.log_likelihood_ == b.log_likelihood_
    assert list(a.bic_) == [2]
    X2 = X.copy()
    X2[0, 0] = "zzz"
    with pytest.raises(ValueError, match="not seen"):
        a.predict(X2, y)
    with pytest.raises(ValueError):
        LatentClassEM(n_components=0).fit(X, y)
    with pytest.raises(ValueError):
        LatentClassEM(smoothing=-1).fit(X, y)
    with pytest.raises(ValueError):
        LatentClassEM().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="not fitted"):
        LatentClassEM().predict(X, y)


def test_latent_class_em_cannot_see_rules_on_uniform_inputs():
    # Two labelling rules on the same uniform categorical inputs: local independence hides them.
    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(600, 8))
    w1, w2 = rng.normal(size=8), rng.normal(size=8)
    block = np.arange(600) >= 400
    y = np.where(block, X @ w2 > np.median(X @ w2), X @ w1 > np.median(X @ w1)).astype(int)
    em = LatentClassEM(n_components=2, random_state=0).fit(X, y)
    assert abs(adjusted_rand_score(block, em.labels_)) < 0.05


# ------------------------------------------------------------------------------ MoE
def test_mixture_of_experts_finds_gated_regions():
    X, y, s = regions((150, 150, 150), seed=1)
    moe = MixtureOfExperts(n_components=3, random_state=0).fit(X, y)
    assert adjusted_rand_score(s, moe.labels_) > 0.8
    assert adjusted_rand_score(s, moe.predict_blocks(X)) > 0.8  # the gate alone routes
    glob = MultinomialLogit(alpha=1e-4).fit(X, y)
    assert moe.score(X, y) > glob.score(X, y) + 0.2
    P = moe.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_allclose(moe.gate_proba(X).sum(axis=1), 1.0)
    assert moe.experts_.shape == (3, 3, 3) and moe.gate_.shape == (3, 3)
    np.testing.assert_allclose(moe.responsibilities_.sum(axis=1), 1.0)


def test_mixture_of_experts_gate_is_flat_without_input_signal():
    # Two rules on the same inputs: EM can split the rows using y, the gate cannot route x.
    X, y, truth = two_rules(300, 150, seed=2)
    moe = MixtureOfExperts(n_components=2, random_state=0).fit(X, y)
    assert adjusted_rand_score(truth, moe.labels_) > 0.3
    g = moe.gate_proba(X)
    assert g.std(axis=0).max() < 0.1  # near-constant gate: no routing signal in x
    assert adjusted_rand_score(truth, moe.predict_blocks(X)) < 0.05


def test_mixture_of_experts_bic_and_validation():
    X, y, _ = regions((100, 100), seed=2)
    moe = MixtureOfExperts(n_components=None, max_components=3, n_init=1, max_iter=30,
                           random_state=0).fit(X, y)
    assert set(moe.bic_) == {1, 2, 3}
    assert moe.n_components_ == min(moe.bic_, key=moe.bic_.get) >= 2
    a = MixtureOfExperts(n_components=2, n_init=1, max_iter=20, random_state=4).fit(X, y)
    b = MixtureOfExperts(n_components=2, n_init=1, max_iter=20, random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    with pytest.raises(ValueError):
        MixtureOfExperts(alpha=0).fit(X, y)
    with pytest.raises(ValueError):
        MixtureOfExperts().fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError):
        a.predict(X[:, :1])
    with pytest.raises(ValueError):
        a.predict_blocks(X, y + 10)
    with pytest.raises(ValueError, match="not fitted"):
        MixtureOfExperts().predict(X)
