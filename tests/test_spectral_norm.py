"""Spectral normalisation: W / (u^T W v) has first- and second-order gradients that pass
gradcheck, power iteration finds the largest singular value, and only training moves u and v."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import scratchgen as sg
from scratchgen import nn
from scratchgen.models.gan import Discriminator
from scratchgen.nn.spectral_norm import spectral_normalized
from scratchgen.testing import arrays, check_gradients


@given(arrays(st.sampled_from([(1, 1), (3, 1), (1, 4), (3, 2), (2, 4), (2, 1, 2, 2), (3, 2, 1, 3)])),
       st.integers(0, 2 ** 16))
def test_spectral_normalized_gradients(weight, seed):
    rng = np.random.default_rng(seed)
    out, rest = weight.shape[0], int(np.prod(weight.shape[1:]))
    u = rng.standard_normal(out)
    u /= np.linalg.norm(u)
    v = weight.reshape(out, rest).T @ u
    assume(np.linalg.norm(v) > 0.3)          # sigma = u^T W v = ||W^T u|| stays away from 0
    v /= np.linalg.norm(v)
    check_gradients(lambda w: spectral_normalized(w, u, v), weight)


def test_power_iteration_finds_the_largest_singular_value_and_normalizes_the_layer():
    sg.manual_seed(0)
    layer = nn.Linear(7, 5, dtype=np.float64)
    before = layer.weight.detach().numpy().copy()
    sn = nn.utils.spectral_norm(layer)
    x = sg.tensor(np.eye(7))
    for _ in range(100):
        y = sn(x)
    top = np.linalg.svd(before, compute_uv=False)[0]
    assert sn.sigma() == pytest.approx(top, rel=1e-8)
    effective = (y.detach().numpy() - layer.bias.detach().numpy()).T    # the rows of W / sigma, read back through the layer
    assert np.linalg.norm(effective, 2) == pytest.approx(1.0, rel=1e-8)
    assert np.array_equal(layer.weight.detach().numpy(), before)   # the parameter itself is untouched


def test_only_training_moves_u_and_v_and_they_are_saved():
    sg.manual_seed(0)
    sn = nn.SpectralNorm(nn.Linear(4, 3))
    x = sg.tensor(np.ones((2, 4), np.float32))
    sn.eval()
    u0 = sn.u.numpy().copy()
    sn(x)
    assert np.array_equal(sn.u.numpy(), u0)
    sn.train()
    sn(x)
    assert not np.array_equal(sn.u.numpy(), u0)
    assert set(sn.state_dict()) == {"module.weight", "module.bias", "u", "v"}


def test_gradient_reaches_the_wrapped_weight():
    sg.manual_seed(0)
    layer = nn.Linear(3, 2, dtype=np.float64)
    sn = nn.SpectralNorm(layer)
    sn(sg.tensor(np.ones((4, 3)))).sum().backward()
    assert layer.weight.grad is not None and np.abs(layer.weight.grad.numpy()).sum() > 0
    assert list(sn.parameters()) == [layer.weight, layer.bias]


def test_discriminator_with_spectral_norm_and_clear_errors():
    D = Discriminator(6, (8, 8), spectral_norm=True)
    assert sum(isinstance(m, nn.SpectralNorm) for m in D.modules()) == 3
    assert D(sg.tensor(np.ones((2, 6), np.float32))).shape == (2,)
    with pytest.raises(TypeError, match="wraps a layer with a 'weight' parameter, got ReLU"):
        nn.SpectralNorm(nn.ReLU())
    with pytest.raises(ValueError, match="n_power_iterations must be >= 1, got 0"):
        nn.SpectralNorm(nn.Linear(2, 2), n_power_iterations=0)
