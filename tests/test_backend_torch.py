"""The PyTorch adapter: a float64 nn.Linear reproduces MultinomialLogit to 1e-8, and the
first-order coefficient c = dV/dtheta of a nonlinear network matches finite differences."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from divpred import (  # noqa: E402
    MultinomialLogit,
    delta_scores,
    influence_matrix,
    influence_variance,
    self_influence,
)
from divpred.backends.torch_adapter import (  # noqa: E402
    TorchInfluenceModel,
    purify_torch,
    train_classifier,
)

from .conftest import make_classification  # noqa: E402

RTOL = 1e-8
# torch's own lazy imports (torch._dynamo under torch.func) warn about torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
MODES = [("exact", "dense"), ("gauss_newton", "dense"), ("gauss_newton", "woodbury"),
         ("gauss_newton", "cg")]


def _linear_from(model):
    C, D = model.theta_.shape
    lin = torch.nn.Linear(D - 1, C).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(model.theta_[:, :-1]))
        lin.bias.copy_(torch.from_numpy(model.theta_[:, -1]))
    return lin


def _close(got, expected, rtol=RTOL):
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * np.max(np.abs(expected)))


# n > m (primal, m x m algebra) and n < m (dual, n x n algebra)
@pytest.fixture(scope="module", params=[(240, 4, 3), (150, 3, 2), (40, 25, 3)],
                ids=["n>m,C3", "n>m,C2", "n<m,C3"])
def fitted(request):
    n, d, C = request.param
    X, y = make_classification(n, d, C, seed=n + d)
    model = MultinomialLogit(alpha=1e-2, damping=0.01).fit(X, y)
    return model, X, y


@pytest.mark.parametrize("hessian,solver", MODES)
def test_linear_reproduces_multinomial_logit(fitted, hessian, solver):
    model, X, y = fitted
    tm = TorchInfluenceModel(_linear_from(model), alpha=model.alpha, damping=model.damping,
                             hessian=hessian, solver=solver, device="cpu", cg_tol=1e-13)
    scores, info = tm.delta_scores(X, y, "fast1", return_info=True)
    assert info["solver"] == solver and info["hessian"] == hessian
    assert info["variance"] == pytest.approx(influence_variance(model, X, y), rel=RTOL)
    _close(scores, delta_scores(model, X, y, "fast1"))
    _close(tm.self_influence(X, y), self_influence(model, X, y))


def test_linear_influence_matrix_and_self_influence_scores(fitted):
    model, X, y = fitted
    tm = TorchInfluenceModel(_linear_from(model), alpha=model.alpha, damping=model.damping,
                             device="cpu")
    _close(tm.influence_matrix(X, y), influence_matrix(model, X, y))
    _close(tm.delta_scores(X, y, "self_influence"), delta_scores(model, X, y, "self_influence"))


def _mlp(d, C, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d, 6), torch.nn.Tanh(), torch.nn.Linear(6, C)
    ).double()


@pytest.mark.parametrize("hessian", ["exact", "gauss_newton"])
@pytest.mark.parametrize("n", [60, 20], ids=["primal", "dual"])
def test_variance_gradient_matches_finite_differences(hessian, n):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(n, 4)), rng.integers(0, 3, n)
    net = _mlp(4, 3)
    damping = 2.0  # the exact Hessian of an untrained network is indefinite without it
    tm = TorchInfluenceModel(net, damping=damping, hessian=hessian, solver="dense", device="cpu")
    c = tm.variance_gradient(X, y)
    v = rng.normal(size=c.shape)
    theta = tm.theta.clone()

    def V(t):
        tm.theta = t
        return tm.influence_variance(X, y)

    eps = 1e-5
    step = torch.from_numpy(eps * v)
    fd = (V(theta + step) - V(theta - step)) / (2 * eps)
    assert c @ v == pytest.approx(fd, rel=1e-6)


def test_iterative_solvers_agree_on_an_mlp():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    net = _mlp(4, 3, seed=1)
    ref = TorchInfluenceModel(net, damping=0.05, hessian="gauss_newton", solver="dense",
                              device="cpu")
    expected, info = ref.delta_scores(X, y, return_info=True)
    for solver in ("woodbury", "cg"):
        tm = TorchInfluenceModel(net, damping=0.05, hessian="gauss_newton", solver=solver,
                                 device="cpu", cg_tol=1e-12)
        got, info2 = tm.delta_scores(X, y, return_info=True)
        assert info2["variance"] == pytest.approx(info["variance"], rel=1e-8)
        _close(got, expected, rtol=1e-7)


def test_auto_choices_and_errors():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    net = _mlp(4, 3)
    tm = TorchInfluenceModel(net, damping=0.05, device="cpu")
    assert tm._choose(30, 3) == ("gauss_newton", "dense")
    tm = TorchInfluenceModel(net, damping=0.05, device="cpu", dense_max_params=10)
    assert tm._choose(30, 3) == ("gauss_newton", "woodbury")
    assert tm._choose(30_000, 3) == ("gauss_newton", "cg")
    with pytest.raises(ValueError, match="positive definite"):
        TorchInfluenceModel(net, damping=0.0, hessian="exact", device="cpu").influence_variance(
            X, y
        )
    with pytest.raises(ValueError, match="method"):
        tm.delta_scores(X, y, "exact")
    with pytest.raises(ValueError, match="solver='dense'"):
        TorchInfluenceModel(net, hessian="exact", solver="cg", device="cpu").influence_variance(
            X, y
        )
    before = [p.detach().clone() for p in net.parameters()]
    TorchInfluenceModel(net, damping=2.0, device="cpu").delta_scores(X, y)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_purify_torch_follows_its_definition():
    """Each iteration: train a fresh seeded network on the kept rows, score them with fast1,
    remove the top k. Replayed here step by step with the public pieces."""
    X, y = make_classification(80, 5, 2, seed=3)
    y = np.where(y == 1, 8, 4)  # arbitrary labels are mapped to 0..C-1
    Xt, yt = make_classification(40, 5, 2, seed=4)
    yt = np.where(yt == 1, 8, 4)

    def make():
        return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(),
                                   torch.nn.Linear(8, 2))

    influence = {"device": "cpu", "damping": 0.01}
    curve = purify_torch(make, X, y, X_test=Xt, y_test=yt, k=5, n_iter=2,
                         train_kwargs={"epochs": 20}, influence_kwargs=influence)
    assert list(curve["size"]) == [80, 75, 70]
    yidx, ytidx = (y == 8).astype(int), (yt == 8).astype(int)
    keep = np.ones(80, bool)
    for it in range(3):
        torch.manual_seed(0)
        net = make()
        epochs = train_classifier(net, X[keep], yidx[keep], seed=0, epochs=20)
        assert curve["train_epochs"][it] == epochs
        tm = TorchInfluenceModel(net, **influence)
        assert curve["variance"][it] == pytest.approx(
            tm.influence_variance(X[keep], yidx[keep]), rel=1e-10)
        with torch.no_grad():
            pred = net(torch.as_tensor(Xt, dtype=torch.float32)).argmax(1).numpy()
        assert curve["test_accuracy"][it] == np.mean(pred == ytidx)
        if it < 2:
            scores = tm.delta_scores(X[keep], yidx[keep], "fast1")
            top = np.nonzero(keep)[0][np.argsort(-scores, kind="stable")[:5]]
            assert curve["removed"][it] == top.tolist()
            keep[top] = False
    assert curve["removed"][2] == []
