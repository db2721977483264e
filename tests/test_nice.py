"""NICE / RealNVP coupling: invertibility, exact log-det, and finite samples."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen.models.nice import NICE, bits_per_dim


def make(dim, coupling, dtype, seed=0):
    sg.manual_seed(seed)
    model = NICE(dim, num_couplings=4, hidden=16, hidden_layers=2, coupling=coupling, dtype=dtype)
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # non-trivial parameters, including the log-scales
        p.data[...] = rng.normal(0, 0.3, p.shape).astype(dtype)
    return model


@pytest.mark.parametrize("coupling", ["additive", "affine"])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-10)])
def test_inverse_of_forward_is_identity(coupling, dtype, tol):
    model = make(12, coupling, dtype)
    x = sg.tensor(np.random.default_rng(1).random((7, 12)).astype(dtype))
    with sg.no_grad():
        h, _ = model(x)
        back = model.inverse(h)
    np.testing.assert_allclose(back.numpy(), x.numpy(), atol=tol, rtol=0)


def numeric_log_abs_det(model, x, eps=1e-6):
    """log |det J| of x -> h with the Jacobian from central differences, per example."""
    out = []
    for row in x:
        J = np.empty((len(row), len(row)))
        for j in range(len(row)):
            e = np.zeros_like(row)
            e[j] = eps
            with sg.no_grad():
                plus = model(sg.tensor(row + e)[None])[0].numpy()[0]
                minus = model(sg.tensor(row - e)[None])[0].numpy()[0]
            J[:, j] = (plus - minus) / (2 * eps)
        out.append(np.linalg.slogdet(J)[1])
    return np.array(out)


@settings(max_examples=10)
@given(half=st.integers(1, 4), coupling=st.sampled_from(["additive", "affine"]), seed=st.integers(0, 50))
def test_logdet_matches_numeric_jacobian(half, coupling, seed):
    model = make(2 * half, coupling, np.float64, seed)
    x = np.random.default_rng(seed).normal(size=(3, 2 * half))
    with sg.no_grad():
        _, logdet = model(sg.tensor(x))
    np.testing.assert_allclose(logdet.numpy(), numeric_log_abs_det(model, x), atol=1e-6)


def test_logistic_and_gaussian_priors_are_normalised_densities():
    h = np.linspace(-40, 40, 400001)
    for prior in ("logistic", "gaussian"):
        model = NICE(2, hidden=4, hidden_layers=1, prior=prior, dtype=np.float64)
        # log p(h, 0) = log p1(h) + log p1(0), and log p(0, 0) = 2 log p1(0)
        logp = model.log_prior(sg.tensor(np.stack([h, np.zeros_like(h)], 1))).numpy()
        log_p1_at_0 = model.log_prior(sg.tensor(np.zeros((1, 2)))).numpy()[0] / 2
        assert np.trapezoid(np.exp(logp - log_p1_at_0), h) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("coupling", ["additive", "affine"])
def test_samples_are_finite_and_log_prob_trains(coupling):
    model = make(8, coupling, np.float32)
    assert np.all(np.isfinite(model.sample(50, generator=sg.Generator(0)).numpy()))
    x = sg.tensor(np.random.default_rng(0).random((64, 8)).astype(np.float32))
    opt = sg.optim.Adam(model.parameters(), lr=1e-3)
    before = -model.log_prob(x).mean().item()
    for _ in range(30):
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < before


def test_bits_per_dim_formula():
    # The paper's 1980.50 nats on MNIST is 4.36 bits/dim of the 8-bit data.
    assert bits_per_dim(1980.50) == pytest.approx(4.3553, abs=1e-3)
    assert bits_per_dim(0.0, dim=1) == pytest.approx(8.0)


def test_odd_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match="even"):
        NICE(5)


@pytest.mark.parametrize("prior, second_moment", [("logistic", np.pi ** 2 / 3), ("gaussian", 1.0)])
def test_initialize_scale_gives_h_the_priors_second_moment(prior, second_moment):
    sg.manual_seed(0)
    model = NICE(8, num_couplings=2, hidden=16, hidden_layers=2, prior=prior, dtype=np.float64)
    x = np.random.default_rng(0).random((500, 8)) * np.array([1, 1e-3, 1, 1e-2, 1, 1, 1e-3, 1])  # some nearly constant
    before = model.log_prob(sg.tensor(x)).mean().item()
    model.initialize_scale(x)
    h, _ = model(sg.tensor(x))
    np.testing.assert_allclose((h.detach().numpy() ** 2).mean(axis=0), second_moment, rtol=1e-10)
    assert model.log_prob(sg.tensor(x)).mean().item() > before


def test_uniform_init_draws_weights_in_range_zero_biases_and_starts_near_the_identity():
    """The authors' released code: U(-0.01, 0.01) weights, zero biases (pylearn2's irange)."""
    sg.manual_seed(0)
    model = NICE(16, num_couplings=2, hidden=32, hidden_layers=3, dtype=np.float64)
    s_before = model.log_scale.detach().numpy().copy()
    assert model.uniform_init_(0.01) is model
    linears = [m for m in model.modules() if isinstance(m, sg.nn.Linear)]
    assert len(linears) == 2 * 4
    for m in linears:
        w = m.weight.detach().numpy()
        assert np.abs(w).max() <= 0.01 and np.abs(w).max() > 0.005   # fills the range
        assert not m.bias.detach().numpy().any()
    np.testing.assert_array_equal(model.log_scale.detach().numpy(), s_before)   # S is not a coupling weight
    x = np.random.default_rng(0).random((10, 16))
    h, logdet = model(sg.tensor(x))
    assert np.abs(h.detach().numpy() - x).max() < 1e-4   # biases 0 and tiny weights: m(x1) ~ 0
    sg.manual_seed(0)
    again = NICE(16, num_couplings=2, hidden=32, hidden_layers=3, dtype=np.float64).uniform_init_(0.01)
    np.testing.assert_array_equal(again.couplings[1].m[0].weight.detach().numpy(),
                                  model.couplings[1].m[0].weight.detach().numpy())   # seeded
