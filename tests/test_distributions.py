"""sg.distributions: densities and entropies against scipy.stats, samplers against their moments
and CDFs, KL closed forms against Monte Carlo, and the reparameterized and score-function
gradient estimators against analytic gradients.

Monte Carlo comparisons use a tolerance of 5 standard errors, with the standard error
estimated from the same samples: a correct implementation fails such a check with
probability below 1e-6, a wrong one (a factor off, a missing term) fails it by a wide margin.
"""
import math

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given, settings, strategies as st_h

import scratchgen as sg
from scratchgen.distributions import (Bernoulli, Categorical, Distribution, Logistic, Normal, Uniform,
                                      kl_divergence, log_mean_exp, register_kl)
from scratchgen.testing import check_gradients

Z = 5.0  # standard errors allowed between a Monte Carlo estimate and the exact value
mus = st_h.floats(-2.0, 2.0)
sigmas = st_h.floats(0.2, 2.0)


def within_mc_error(samples, exact, what=""):
    """The mean of i.i.d. `samples` (along axis 0) equals `exact` within Z standard errors."""
    samples = np.asarray(samples, dtype=np.float64)
    est = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / math.sqrt(len(samples))
    err = np.abs(est - exact)
    assert np.all(err <= Z * se + 1e-9 * (1 + np.abs(exact))), \
        f"{what}: estimate {est} vs exact {exact}, error {err} > {Z} x standard error {se}"
    return est, se


def grid(n=9):
    return np.linspace(-4.0, 4.0, n)


# -- log_prob and entropy against scipy.stats ---------------------------------------------------------
@given(mu=mus, sigma=sigmas)
def test_normal_log_prob_and_entropy_match_scipy(mu, sigma):
    d = Normal(np.float64(mu), np.float64(sigma))
    np.testing.assert_allclose(d.log_prob(grid()).numpy(), st.norm(mu, sigma).logpdf(grid()), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.entropy().numpy(), st.norm(mu, sigma).entropy(), rtol=1e-12)


@given(mu=mus, s=sigmas)
def test_logistic_log_prob_and_entropy_match_scipy(mu, s):
    d = Logistic(np.float64(mu), np.float64(s))
    x = np.concatenate([grid(), [-300.0, 300.0]])  # far tails: no overflow, still exact
    np.testing.assert_allclose(d.log_prob(x).numpy(), st.logistic(mu, s).logpdf(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.entropy().numpy(), st.logistic(mu, s).entropy(), rtol=1e-12)


# Subnormal lows are excluded: scipy's (x - low) / scale rounds to -0.0 there and counts
# x = 0 < low as inside the support.
@given(low=st_h.floats(-3, 1, allow_subnormal=False), width=st_h.floats(0.1, 4))
def test_uniform_log_prob_and_entropy_match_scipy(low, width):
    d = Uniform(np.float64(low), np.float64(low + width))
    x = np.concatenate([grid(17), [low + 0.5 * width]])
    # Points at an end (low=-1.1, width=0.1 puts -1.0 there) are checked below: scipy decides them
    # by the rounding of (x - low) / width.
    x = x[(np.abs(x - low) > 1e-9) & (np.abs(x - (low + width)) > 1e-9)]
    # atol: high - low recomputed from low + width rounds, and log(width) near 0 shows it absolutely.
    np.testing.assert_allclose(d.log_prob(x).numpy(), st.uniform(low, width).logpdf(x), rtol=1e-12, atol=1e-12)
    # The support is closed: both ends have the density (scipy agrees up to the rounding of low + width).
    np.testing.assert_allclose(d.log_prob(np.array([low, low + width])).numpy(), -math.log(width),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.entropy().numpy(), st.uniform(low, width).entropy(), rtol=1e-12, atol=1e-12)


@given(logit=st_h.floats(-8, 8))
def test_bernoulli_log_prob_and_entropy_match_scipy_from_logits_and_probs(logit):
    p = 1 / (1 + math.exp(-logit))
    x = np.array([0.0, 1.0])
    for d in (Bernoulli(logits=np.float64(logit)), Bernoulli(probs=np.float64(p))):
        np.testing.assert_allclose(d.log_prob(x).numpy(), st.bernoulli(p).logpmf(x), rtol=1e-9)
        np.testing.assert_allclose(d.entropy().numpy(), st.bernoulli(p).entropy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(d.mean.numpy(), p, rtol=1e-12)


@given(logits=st_h.lists(st_h.floats(-4, 4), min_size=2, max_size=6))
def test_categorical_log_prob_and_entropy_match_scipy(logits):
    logits = np.array(logits)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    K = len(p)
    one_hot = np.eye(K)
    for d in (Categorical(logits=logits), Categorical(probs=p * 3.0)):  # probs need not sum to one
        np.testing.assert_allclose(d.log_prob(np.arange(K)).numpy(), st.multinomial(1, p).logpmf(one_hot),
                                   rtol=1e-9)
        np.testing.assert_allclose(d.entropy().numpy(), st.entropy(p), rtol=1e-9, atol=1e-12)


def test_categorical_batches_over_leading_axes():
    logits = np.random.default_rng(0).normal(size=(2, 3, 4))
    d = Categorical(logits=logits)
    assert d.batch_shape == (2, 3) and d.num_categories == 4
    value = np.array([3, 0, 1])  # broadcasts against the batch (2, 3)
    expected = (logits - np.log(np.exp(logits).sum(-1, keepdims=True)))[:, np.arange(3), value]
    np.testing.assert_allclose(d.log_prob(value).numpy(), expected, rtol=1e-12)
    assert d.sample((5,), generator=sg.Generator(0)).shape == (5, 2, 3)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        d.log_prob(np.array([4, 0, 0]))


# -- numerics at extreme logits -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_log_prob_at_extreme_logits_is_finite_and_exact(dtype):
    logits = sg.tensor(np.array([1e4, 1e4, -1e4, -1e4], dtype=dtype), requires_grad=True)
    x = np.array([1, 0, 1, 0], dtype=dtype)
    lp = Bernoulli(logits=logits).log_prob(x)
    assert lp.dtype == dtype
    # log sigmoid(1e4) = 0 and log(1 - sigmoid(1e4)) = -1e4 exactly in floating point.
    np.testing.assert_array_equal(lp.detach().numpy(), np.array([0.0, -1e4, -1e4, 0.0], dtype=dtype))
    g, = sg.grad(lp.sum(), logits)
    np.testing.assert_array_equal(g.numpy(), x - np.array([1, 1, 0, 0], dtype=dtype))  # x - sigmoid(l)
    ent = Bernoulli(logits=logits.detach()).entropy().numpy()
    assert np.all(np.isfinite(ent)) and np.all(ent >= 0) and np.all(ent < 1e-30)


# -- samplers ---------------------------------------------------------------------------------------------
N_SAMPLES = 200_000


@pytest.mark.parametrize("make, sampler", [
    (lambda: Normal(np.float64(0.7), np.float64(1.9)), "sample"),
    (lambda: Normal(np.float64(0.7), np.float64(1.9)), "rsample"),
    (lambda: Logistic(np.float64(-1.2), np.float64(0.6)), "rsample"),
    (lambda: Uniform(np.float64(-1.0), np.float64(2.5)), "rsample"),
    (lambda: Bernoulli(logits=np.float64(0.8)), "sample"),
    (lambda: Categorical(probs=np.array([0.1, 0.2, 0.3, 0.4])), "sample"),
], ids=["normal", "normal-r", "logistic", "uniform", "bernoulli", "categorical"])
def test_sample_moments_match_mean_and_stddev(make, sampler):
    d = make()
    x = getattr(d, sampler)((N_SAMPLES,), generator=sg.Generator(0)).numpy().astype(np.float64)
    assert x.shape == (N_SAMPLES,)
    mean, var = float(d.mean.numpy()), float(d.variance.numpy())
    within_mc_error(x, mean, "sample mean")
    within_mc_error((x - mean) ** 2, var, "sample variance")
    np.testing.assert_allclose(float(d.stddev.numpy()) ** 2, var, rtol=1e-12)


@pytest.mark.parametrize("d, cdf", [
    (Normal(np.float64(0.7), np.float64(1.9)), st.norm(0.7, 1.9).cdf),
    (Logistic(np.float64(-1.2), np.float64(0.6)), st.logistic(-1.2, 0.6).cdf),
    (Uniform(np.float64(-1.0), np.float64(2.5)), st.uniform(-1.0, 3.5).cdf),
], ids=["normal", "logistic", "uniform"])
def test_rsample_follows_the_distribution(d, cdf):
    x = d.rsample((20_000,), generator=sg.Generator(1)).numpy()
    assert st.kstest(x, cdf).pvalue > 1e-3


def test_sample_shape_and_generator_reproducibility():
    d = Normal(sg.zeros(3), sg.ones(3))
    a = d.sample((4, 2), generator=sg.Generator(5))
    b = d.sample((4, 2), generator=sg.Generator(5))
    assert a.shape == (4, 2, 3) and a.dtype == np.float32 and not a.requires_grad
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert Bernoulli(logits=sg.zeros(3)).sample(7).shape == (7, 3)


@pytest.mark.parametrize("d", [Bernoulli(logits=0.0), Categorical(logits=[0.0, 1.0])], ids=["bernoulli", "categorical"])
def test_discrete_distributions_have_no_rsample(d):
    with pytest.raises(NotImplementedError, match="score-function"):
        d.rsample()


def test_parameter_validation():
    with pytest.raises(ValueError, match="scale must be positive"):
        Normal(0.0, -1.0)
    with pytest.raises(ValueError, match="exactly one"):
        Bernoulli(logits=0.0, probs=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Bernoulli(probs=1.5)
    with pytest.raises(ValueError, match="positive"):
        Uniform(1.0, 1.0)


# -- gradients of log_prob, entropy and KL (first and second order) ---------------------------------------
DENSITY_CASES = [
    ("normal", lambda x, m, s: Normal(m, s).log_prob(x), ("real", "real", "positive")),
    ("logistic", lambda x, m, s: Logistic(m, s).log_prob(x), ("real", "real", "positive")),
    ("bernoulli-logits", lambda l: Bernoulli(logits=l).log_prob(np.array([0.0, 1.0, 1.0])), ("real",)),
    ("bernoulli-probs", lambda p: Bernoulli(probs=p).log_prob(np.array([0.0, 1.0, 1.0])), ("unit",)),
    ("categorical", lambda l: Categorical(logits=l).log_prob(np.array([2, 0])), ("real",)),
    ("uniform", lambda a, h: Uniform(-a, h + 3.0).log_prob(np.array([0.1, 0.5])), ("positive", "positive")),
    ("normal-entropy", lambda s: Normal(0.0, s).entropy(), ("positive",)),
    ("bernoulli-entropy", lambda l: Bernoulli(logits=l).entropy(), ("real",)),
    ("categorical-entropy", lambda l: Categorical(logits=l).entropy(), ("real",)),
    ("kl-normal", lambda m1, s1, m2, s2: kl_divergence(Normal(m1, s1), Normal(m2, s2)),
     ("real", "positive", "real", "positive")),
    ("kl-bernoulli", lambda a, b: kl_divergence(Bernoulli(logits=a), Bernoulli(logits=b)), ("real", "real")),
    ("kl-categorical", lambda a, b: kl_divergence(Categorical(logits=a), Categorical(logits=b)), ("real", "real")),
]


@pytest.mark.parametrize("name, fn, inputs", DENSITY_CASES, ids=[c[0] for c in DENSITY_CASES])
def test_gradients_of_densities_pass_gradcheck_and_gradgradcheck(name, fn, inputs):
    rng = np.random.default_rng(0)
    lo_hi = {"real": (-2.0, 2.0), "positive": (0.3, 2.0), "unit": (0.1, 0.9)}
    shape = (2, 3) if "categorical" in name else (1,) if name == "uniform" else (3,)
    arrays = [rng.uniform(*lo_hi[d], size=shape) for d in inputs]
    assert check_gradients(fn, *arrays)


# -- KL divergence ---------------------------------------------------------------------------------------
@settings(max_examples=15)
@given(m1=mus, s1=sigmas, m2=mus, s2=sigmas)
def test_normal_kl_closed_form_equals_monte_carlo(m1, s1, m2, s2):
    p, q = Normal(np.float64(m1), np.float64(s1)), Normal(np.float64(m2), np.float64(s2))
    z = p.sample((N_SAMPLES,), generator=sg.Generator(0))
    log_ratio = (p.log_prob(z) - q.log_prob(z)).numpy()
    exact = float(kl_divergence(p, q).numpy())
    assert exact >= 0
    within_mc_error(log_ratio, exact, "KL(p || q)")


def test_bernoulli_and_categorical_kl_match_their_definitions():
    a, b = np.array([-3.0, 0.2, 2.5]), np.array([1.0, -0.4, 2.0])
    pa, pb = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
    expected = pa * np.log(pa / pb) + (1 - pa) * np.log((1 - pa) / (1 - pb))
    np.testing.assert_allclose(kl_divergence(Bernoulli(logits=a), Bernoulli(logits=b)).numpy(), expected, rtol=1e-10)
    # Exact where probabilities saturate: KL(Bern(l) || Bern(-l)) = l (1 - 2 sigmoid(-l)) -> l, and
    # 1e4 at l = 1e4, where a formula through log(p) would give log(0).
    for l in (60.0, 1e4):
        kl = kl_divergence(Bernoulli(logits=np.float64(l)), Bernoulli(logits=np.float64(-l))).numpy()
        np.testing.assert_allclose(kl, l, rtol=1e-15)
    p, q = np.array([0.1, 0.6, 0.3]), np.array([0.3, 0.3, 0.4])
    np.testing.assert_allclose(kl_divergence(Categorical(probs=p), Categorical(probs=q)).numpy(),
                               st.entropy(p, q), rtol=1e-12)


def test_uniform_kl_is_log_width_ratio_inside_and_infinite_outside():
    kl = kl_divergence(Uniform(np.array([0.0, -1.0]), np.array([1.0, 1.0])),
                       Uniform(np.array([-1.0, 0.0]), np.array([3.0, 3.0]))).numpy()
    np.testing.assert_allclose(kl[0], math.log(4.0), rtol=1e-12)
    assert kl[1] == math.inf


def test_kl_of_unregistered_pair_says_so_and_registration_dispatches_on_subclasses():
    with pytest.raises(NotImplementedError, match=r"KL\(Normal \|\| Bernoulli\)"):
        kl_divergence(Normal(0.0, 1.0), Bernoulli(logits=0.0))

    class Wide(Normal):
        pass

    # A subclass uses its parent's rule until it registers a more specific one.
    np.testing.assert_allclose(kl_divergence(Wide(0.0, 2.0), Normal(0.0, 1.0)).numpy(),
                               kl_divergence(Normal(0.0, 2.0), Normal(0.0, 1.0)).numpy())

    @register_kl(Wide, Normal)
    def _kl(p, q):
        return sg.tensor(-1.0)

    try:
        assert kl_divergence(Wide(0.0, 2.0), Normal(0.0, 1.0)).item() == -1.0
        assert kl_divergence(Normal(0.0, 2.0), Wide(0.0, 1.0)).item() > 0  # (Normal, Normal) still
    finally:
        from scratchgen import distributions
        distributions._KL_REGISTRY.pop((Wide, Normal))
    with pytest.raises(TypeError):
        register_kl(Normal, int)
    assert issubclass(Normal, Distribution)


# -- gradient estimators of E_q[f(z)], q = N(mu, sigma^2) -------------------------------------------------
# f(z) = z^2:    E = mu^2 + sigma^2,            d/dmu = 2 mu,                      d/dsigma = 2 sigma
# f(z) = e^z:    E = exp(mu + sigma^2 / 2),     d/dmu = E,                         d/dsigma = sigma E
FUNCTIONS = {
    "square": (lambda z: z * z, lambda mu, s: (2 * mu, 2 * s)),
    "exp": (lambda z: z.exp(), lambda mu, s: (math.exp(mu + s * s / 2), s * math.exp(mu + s * s / 2))),
}
N_GRAD = 100_000


def per_sample_gradients(fname, estimator, mu, sigma, generator):
    """(engine gradient of the n-sample estimate, per-sample gradient terms as arrays (n, 2)).

    The engine differentiates the estimator's surrogate; the per-sample terms (written out
    by hand) give its standard error."""
    f = FUNCTIONS[fname][0]
    m = sg.tensor(np.float64(mu), requires_grad=True)
    s = sg.tensor(np.float64(sigma), requires_grad=True)
    q = Normal(m, s)
    if estimator == "reparameterization":
        z = q.rsample((N_GRAD,), generator=generator)           # z = mu + sigma * eps
        surrogate = f(z).mean()
        eps = (z.detach().numpy() - mu) / sigma
        dfdz = 2 * z.detach().numpy() if fname == "square" else np.exp(z.detach().numpy())
        terms = np.stack([dfdz, dfdz * eps], axis=1)            # df/dz * dz/dmu, df/dz * dz/dsigma
    else:
        z = q.sample((N_GRAD,), generator=generator)            # no path through z
        fz = f(z)
        surrogate = (fz * q.log_prob(z)).mean()                 # grad = mean f(z) grad log q(z)
        zn, fn = z.numpy(), fz.numpy()
        terms = np.stack([fn * (zn - mu) / sigma**2, fn * ((zn - mu) ** 2 / sigma**3 - 1 / sigma)], axis=1)
    gm, gs = sg.grad(surrogate, [m, s])
    return np.array([gm.item(), gs.item()]), terms


@settings(max_examples=10)
@given(mu=st_h.floats(-1.0, 1.0), sigma=st_h.floats(0.2, 1.0), fname=st_h.sampled_from(sorted(FUNCTIONS)))
def test_reparameterized_and_score_function_gradients_match_analytic(mu, sigma, fname):
    exact = np.array(FUNCTIONS[fname][1](mu, sigma))
    ses = {}
    for seed, estimator in enumerate(["reparameterization", "score-function"]):
        grad, terms = per_sample_gradients(fname, estimator, mu, sigma, sg.Generator(seed))
        np.testing.assert_allclose(grad, terms.mean(axis=0), rtol=1e-9, atol=1e-12)  # the engine agrees
        _, ses[estimator] = within_mc_error(terms, exact, f"{estimator} gradient of E[{fname}(z)]")
    # Both are unbiased; the score-function estimator pays for it with a larger variance.
    assert np.all(ses["score-function"] > ses["reparameterization"])


def test_rsample_gradient_flows_and_sample_gradient_does_not():
    m = sg.tensor(np.float64(0.3), requires_grad=True)
    s = sg.tensor(np.float64(0.5), requires_grad=True)
    q = Normal(m, s)
    assert q.rsample((3,)).requires_grad and not q.sample((3,)).requires_grad
    # Second order: d^2/dsigma^2 E[z^2] = 2, and each reparameterized sample gives exactly 2.
    z = q.rsample((5,), generator=sg.Generator(0))
    gs, = sg.grad((z * z).mean(), s, create_graph=True)
    g2, = sg.grad(gs, s)
    eps = (z.detach().numpy() - 0.3) / 0.5
    np.testing.assert_allclose(g2.item(), 2 * np.mean(eps ** 2), rtol=1e-12)


def test_log_mean_exp_is_stable():
    x = sg.tensor(np.array([[1000.0, -1000.0], [1000.0, -1000.0]]))
    np.testing.assert_allclose(log_mean_exp(x, axis=0).numpy(), [1000.0, -1000.0])


def test_normal_cdf_and_icdf_match_scipy_and_invert_each_other():
    from scipy import stats
    d = sg.distributions.Normal(sg.tensor(np.array([0.5, -1.0])), sg.tensor(np.array([2.0, 0.3])))
    x = np.array([1.3, -0.9])
    np.testing.assert_allclose(d.cdf(sg.tensor(x)).numpy(), stats.norm(d.loc.numpy(), d.scale.numpy()).cdf(x),
                               rtol=1e-12)
    p = np.array([0.1, 0.8])
    np.testing.assert_allclose(d.cdf(d.icdf(sg.tensor(p))).numpy(), p, rtol=1e-10)
    from scratchgen.testing import check_gradients
    check_gradients(lambda loc, v: sg.distributions.Normal(loc, sg.tensor(np.array([2.0, 0.3]))).cdf(v),
                    np.array([0.5, -1.0]), x)


def test_multivariate_normal_log_prob_sampling_and_gradients():
    from scipy import stats
    from scratchgen.testing import check_gradients
    loc = np.array([0.5, -1.0, 2.0])
    a = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]])
    x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 2.5]])
    d = sg.distributions.MultivariateNormal(sg.tensor(loc), covariance_matrix=sg.tensor(a))
    np.testing.assert_allclose(d.log_prob(sg.tensor(x)).numpy(), stats.multivariate_normal(loc, a).logpdf(x),
                               rtol=1e-10)
    assert d.entropy().item() == pytest.approx(stats.multivariate_normal(loc, a).entropy(), rel=1e-10)
    draws = d.rsample((20000,), generator=sg.Generator(0)).numpy()
    np.testing.assert_allclose(np.cov(draws.T), a, atol=0.06)
    tril = np.linalg.cholesky(a)
    check_gradients(lambda m, l: sg.distributions.MultivariateNormal(m, scale_tril=l).log_prob(sg.tensor(x)),
                    loc, tril)
    with pytest.raises(ValueError, match="exactly one"):
        sg.distributions.MultivariateNormal(sg.tensor(loc))
