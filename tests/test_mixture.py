"""Mixture of density models: exact normalisation, the posterior-weighted gradient, sampling,
and clear errors; plus the models package exporting its classes (`scratchgen.models.MADE`)."""
import itertools

import numpy as np
import pytest

import scratchgen as sg
import scratchgen.models as models
from scratchgen.models import MADE, NICE, Mixture


def made(D, seed, natural=False):
    m = MADE(D, [6], natural_ordering=natural, direct_connection=True, seed=seed, dtype=np.float64)
    for w in m.parameters():   # larger weights than the init, so the components differ clearly
        w.data[...] = np.random.default_rng(seed).normal(0, 1.0, w.shape)
    return m


def all_binary(D):
    return np.array(list(itertools.product([0.0, 1.0], repeat=D)))


def test_the_models_package_exports_the_model_classes():
    from scratchgen.models.made import MADE as made_class
    from scratchgen.models.nice import NICE as nice_class
    assert MADE is made_class and NICE is nice_class
    for name in ("VAE", "GAN", "WGANGP", "PixelCNN", "GatedPixelCNN", "InfoGAN", "Mixture"):
        assert isinstance(getattr(models, name), type), name
    assert models.MADE(4, [5]).log_prob(np.ones((2, 4), np.float32)).shape == (2,)


def test_log_prob_is_the_weighted_logsumexp_and_sums_to_one():
    D = 4
    a, b, c = made(D, 0), made(D, 1), made(D, 2, natural=True)
    mixture = Mixture([a, b, c], weights=[1, 2, 5])
    x = all_binary(D)
    pa, pb, pc = (np.exp(m.log_prob(x).detach().numpy()) for m in (a, b, c))
    p = np.exp(mixture.log_prob(x).detach().numpy())
    np.testing.assert_allclose(p, (pa + 2 * pb + 5 * pc) / 8, rtol=1e-12)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)   # exact normalisation over all 2^D images


def test_a_mixture_of_one_model_with_itself_is_that_model():
    D = 5
    a = made(D, 3)
    x = all_binary(D)[::3]
    np.testing.assert_allclose(Mixture([a, a], weights=[0.3, 0.7]).log_prob(x).detach().numpy(), a.log_prob(x).detach().numpy(),
                               rtol=1e-12)


def test_the_gradient_is_each_components_gradient_weighted_by_its_posterior():
    # d/dtheta_k log sum_j pi_j p_j(x) = r_k(x) d/dtheta_k log p_k(x),  r_k = pi_k p_k(x) / p(x)
    D = 4
    a, b = made(D, 4), made(D, 5)
    x = all_binary(D)[5:6]
    mixture = Mixture([a, b], weights=[0.25, 0.75])
    w = a.layers[0].weight
    g_mixture, = sg.grad(mixture.log_prob(x).sum(), w)
    g_a, = sg.grad(a.log_prob(x).sum(), w)
    la, lb = float(a.log_prob(x).detach().numpy()[0]), float(b.log_prob(x).detach().numpy()[0])
    r_a = 0.25 * np.exp(la) / (0.25 * np.exp(la) + 0.75 * np.exp(lb))
    np.testing.assert_allclose(g_mixture.numpy(), r_a * g_a.numpy(), rtol=1e-10, atol=1e-14)


def test_samples_come_from_the_components_in_proportion():
    D = 3
    a, b = made(D, 6), made(D, 7)
    for w in (*a.parameters(), *b.parameters()):
        w.data[...] = 0.0
    a.layers[-1].bias.data[...] = 30.0    # a always draws all ones, b all zeros
    b.layers[-1].bias.data[...] = -30.0
    x = Mixture([a, b], weights=[1, 3]).sample(4000, generator=sg.manual_seed(0)).numpy()
    assert x.shape == (4000, D) and set(np.unique(x)) <= {0.0, 1.0}
    assert np.all((x.sum(1) == 0) | (x.sum(1) == D))
    assert x[:, 0].mean() == pytest.approx(0.25, abs=0.03)
    again = Mixture([a, b], weights=[1, 3]).sample(4000, generator=sg.manual_seed(0)).numpy()
    assert np.array_equal(x, again)


def test_bad_components_and_weights_are_named():
    a = made(3, 0)
    with pytest.raises(ValueError, match="at least one"):
        Mixture([])
    with pytest.raises(TypeError, match="component 1 .*Linear.* no log_prob"):
        Mixture([a, sg.nn.Linear(3, 3)])
    with pytest.raises(ValueError, match=r"2 finite positive numbers.*\[1.0, -1.0\]"):
        Mixture([a, a], weights=[1, -1])
    with pytest.raises(ValueError, match="one per component"):
        Mixture([a, a], weights=[1, 1, 1])
