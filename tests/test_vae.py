"""The VAE: its bound against an exact likelihood (a 1-D latent, integrated on a grid), the
importance weights' unbiasedness, ELBO <= IWAE_5 <= IWAE_50 on a trained model, batching
invariance of the IWAE evaluation, reparameterized gradients against finite differences,
KL warm-up, and a short training run through the registered spec."""
import math

import numpy as np
import pytest
import scipy.stats as st

import scratchgen as sg
from scratchgen.data import DataLoader
from scratchgen.specs import create
from scratchgen.models.vae import VAE, evaluate_elbo
from scratchgen.ops.reduce import logsumexp
from scratchgen.train import fit

Z = 5.0  # Monte Carlo tolerance, in standard errors


def all_binary_vectors(D):
    return ((np.arange(2 ** D)[:, None] >> np.arange(D)[::-1]) & 1).astype(np.float64)


def tiny_vae(seed=0, **kwargs):
    """A float64 VAE on 6 binary pixels with a 1-D latent, its decoder sharpened so that p(x) is
    far from uniform and the (untrained) encoder's q(z|x) far from the true posterior."""
    sg.manual_seed(seed)
    model = VAE(6, [8], 1, dtype=np.float64, **kwargs)
    for p in model.decoder.parameters():
        p.data *= 5
    model.dec_out.weight.data *= 5
    return model


def exact_log_px(model, xs, lim=12.0, n=6001):
    """log p(x) = log of the integral of p(x|z) N(z; 0, 1) dz, by a fine Riemann sum (the integrand
    is smooth and vanishes at +-lim, so the sum is exact to ~1e-12)."""
    z = np.linspace(-lim, lim, n)[:, None]
    with sg.no_grad():
        log_px_z = model.decode(sg.tensor(z[:, None, :])).log_prob(xs).sum(axis=-1)  # (n, len(xs))
        log_joint = log_px_z + sg.tensor(st.norm.logpdf(z))
        return (logsumexp(log_joint, axis=0) + math.log(z[1, 0] - z[0, 0])).numpy()


def test_the_model_is_normalized_and_the_importance_weights_are_unbiased():
    model = tiny_vae()
    xs = all_binary_vectors(6)
    log_px = exact_log_px(model, xs)
    np.testing.assert_allclose(np.exp(log_px).sum(), 1.0, rtol=1e-9)  # sum over all 64 x of p(x)
    x = xs[[5, 37, 60]]
    with sg.no_grad():
        log_w = model.log_weights(x, 20000, generator=sg.Generator(0)).numpy()      # (k, 3)
        elbo = model.elbo(np.tile(x, (20000, 1)), generator=sg.Generator(1)).numpy().reshape(20000, 3)
    # E_q[w] = p(x) exactly: the importance weights are unbiased for the likelihood...
    w = np.exp(log_w - log_px[[5, 37, 60]])
    se = w.std(axis=0, ddof=1) / math.sqrt(len(w))
    assert np.all(np.abs(w.mean(axis=0) - 1) <= Z * se), (w.mean(axis=0), se)
    # ...and E_q[log w] is the ELBO, below log p(x) (Jensen); the analytic-KL estimator agrees.
    gap = log_px[[5, 37, 60]] - log_w.mean(axis=0)
    assert np.all(gap > Z * log_w.std(axis=0) / math.sqrt(len(log_w))), gap
    d = elbo.mean(axis=0) - log_w.mean(axis=0)
    se_d = np.sqrt(elbo.var(axis=0) / len(elbo) + log_w.var(axis=0) / len(log_w))
    assert np.all(np.abs(d) <= Z * se_d), (d, se_d)


def test_iwae_gap_to_the_exact_likelihood_shrinks_to_zero_as_k_grows():
    model = tiny_vae(seed=1)
    xs = all_binary_vectors(6)[::9]
    log_px = exact_log_px(model, xs)
    S = 100  # independent repetitions of each estimate, as copies of the batch
    with sg.no_grad():
        gaps = {k: log_px - model.log_likelihood(np.tile(xs, (S, 1)), k=k, generator=sg.Generator(k)).numpy()
                .reshape(S, len(xs)) for k in (1, 10, 1000)}
    mean = {k: g.mean() for k, g in gaps.items()}
    se = {k: g.mean(axis=1).std(ddof=1) / math.sqrt(S) for k, g in gaps.items()}
    # log p(x) - L_k is positive and decreasing in k (Burda et al., Theorem 1)...
    assert mean[1] - mean[10] > 3 * math.hypot(se[1], se[10]) and mean[1] > Z * se[1]
    assert mean[10] - mean[1000] > 3 * math.hypot(se[10], se[1000]) and mean[10] > Z * se[10]
    # ...and goes to zero: L_1000 is within Monte Carlo error of the exact log-likelihood.
    assert abs(mean[1000]) < Z * se[1000] + 0.005
    assert np.all(np.abs(gaps[1000].mean(axis=0)) < 0.05)


def test_single_sample_iwae_is_the_mc_kl_elbo_for_the_same_noise():
    model = tiny_vae(kl="mc")
    x = all_binary_vectors(6)[10:20]
    with sg.no_grad():
        elbo = model.elbo(x, generator=sg.Generator(3)).numpy()
        iwae1 = model.log_likelihood(x, k=1, generator=sg.Generator(3)).numpy()
    np.testing.assert_allclose(iwae1, elbo, rtol=1e-13)


def test_analytic_kl_is_kingma_welling_appendix_b():
    model = tiny_vae()
    x = all_binary_vectors(6)
    _, rec, kl = model.elbo(x, generator=sg.Generator(0), return_terms=True)
    with sg.no_grad():
        q = model.encode(x)
        mu, logvar = q.loc.numpy(), 2 * np.log(q.scale.numpy())
    expected = -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)
    np.testing.assert_allclose(kl.detach().numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("k, batch", [(64, 7), (50, 1), (50, 50)])
def test_log_likelihood_does_not_depend_on_the_chunk_size(k, batch):
    model = tiny_vae()
    x = all_binary_vectors(6)[::5]
    with sg.no_grad():
        one_pass = model.log_likelihood(x, k=k, batch=k, generator=sg.Generator(7)).numpy()
        chunked = model.log_likelihood(x, k=k, batch=batch, generator=sg.Generator(7)).numpy()
        default = model.log_likelihood(x, k=k, generator=sg.Generator(7)).numpy()
    np.testing.assert_allclose(chunked, one_pass, rtol=1e-12)
    np.testing.assert_allclose(default, one_pass, rtol=1e-12)


@pytest.mark.parametrize("likelihood, kl", [("bernoulli", "analytic"), ("bernoulli", "mc"), ("gaussian", "analytic")])
def test_reparameterized_elbo_gradients_match_finite_differences(likelihood, kl):
    """With the noise eps held fixed, the ELBO is a deterministic function of every parameter,
    encoder included (through z = mu + sigma * eps): its gradient must match central differences."""
    sg.manual_seed(0)
    model = VAE(5, [4], 2, likelihood=likelihood, kl=kl, dtype=np.float64)
    x = np.random.default_rng(0).random((3, 5))
    x = (x > 0.5).astype(np.float64) if likelihood == "bernoulli" else x

    def objective():
        return model.elbo(x, generator=sg.Generator(11)).sum()

    objective().backward()
    params = dict(model.named_parameters())
    assert (likelihood == "gaussian") == ("log_sigma" in params)
    rng = np.random.default_rng(1)
    for name, p in params.items():
        analytic = p.grad.numpy().copy()
        assert np.any(analytic != 0), f"{name} gets no gradient"
        flat, grad = p.data.reshape(-1), analytic.reshape(-1)
        for j in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            orig, h = flat[j], 1e-6
            flat[j] = orig + h
            with sg.no_grad():
                plus = objective().item()
            flat[j] = orig - h
            with sg.no_grad():
                minus = objective().item()
            flat[j] = orig
            np.testing.assert_allclose(grad[j], (plus - minus) / (2 * h), rtol=1e-5, atol=1e-7,
                                       err_msg=f"d ELBO / d {name}[{j}]")


def test_gaussian_decoder_is_a_normal_with_fixed_or_learned_sigma():
    z = sg.tensor(np.random.default_rng(0).normal(size=(4, 2)))
    x = np.random.default_rng(1).random((4, 5))
    fixed = VAE(5, [3], 2, likelihood="gaussian", sigma=0.1, dtype=np.float64)
    px = fixed.decode(z)
    mean = px.mean.detach().numpy()
    assert np.all((mean > 0) & (mean < 1)) and "log_sigma" not in dict(fixed.named_parameters())
    np.testing.assert_allclose(px.log_prob(x).detach().numpy(), st.norm(mean, 0.1).logpdf(x), rtol=1e-12)
    learned = VAE(5, [3], 2, likelihood="gaussian", dtype=np.float64)
    learned.log_sigma.data[...] = math.log(0.3)
    np.testing.assert_allclose(learned.decode(z).stddev.detach().numpy(), 0.3, rtol=1e-12)
    with pytest.raises(ValueError, match="sigma must be positive"):
        VAE(5, [3], 2, likelihood="gaussian", sigma=0.0)


def test_kl_warmup_raises_beta_linearly_and_is_saved_with_the_model():
    model = tiny_vae(warmup_steps=4)
    x = all_binary_vectors(6)
    betas = []
    for _ in range(6):
        out = model.training_loss(x, generator=sg.Generator(0))
        betas.append(out["beta"])
        if out["beta"] == 0:  # no KL at all in the first step
            np.testing.assert_allclose(out["loss"].item(), -out["rec"].item(), rtol=1e-12)
    assert betas == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    restored = tiny_vae(warmup_steps=4)
    restored.load_state_dict(model.state_dict())
    assert restored.current_beta() == 1.0 and int(restored.steps.item()) == 6


# -- a short training run through the registered spec ------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small VAE (784-64-8, ReLU) trained for 8 epochs on 1,000 dynamically binarized MNIST digits
    (the bundled subset works offline), about 2 s."""
    spec = create("vae", dict(binarization="dynamic", hidden=[64], latent=8, limit_train=1000, limit_eval=1000,
                              activation="relu", batch_size=50, lr=3e-3, epochs=8, iwae_k=20, seed=0))
    sg.manual_seed(0)
    model = spec.build()
    valid = spec._split("valid")
    before = evaluate_elbo(model, valid)
    loader = DataLoader(spec.train_dataset(), batch_size=50, shuffle=True, seed=0)
    result = fit(model, spec.make_optimizer(model), loader, spec.loss, 8, progress=False, log=None)
    model.eval()
    return spec, model, valid, before, result, tmp_path_factory.mktemp("vae")


def test_training_improves_the_elbo(trained):
    spec, model, valid, before, result, _ = trained
    losses = result.train_losses
    assert all(b < a for a, b in zip(losses[:4], losses[1:5])) and losses[-1] < losses[0] - 150, losses
    assert evaluate_elbo(model, valid) > before + 300  # from about -550 nats to about -175
    assert set(result.history[0]) >= {"train_elbo", "train_kl", "train_rec"}


def test_elbo_below_iwae5_below_iwae50_on_a_trained_model(trained):
    _, model, valid, *_ = trained
    with sg.no_grad():
        bounds = [model.elbo(valid, generator=sg.Generator(1)).numpy()] + [
            model.log_likelihood(valid, k=k, generator=sg.Generator(k)).numpy() for k in (5, 50)]
    for lower, upper in zip(bounds[:-1], bounds[1:]):
        d = upper - lower  # paired over the same examples
        assert d.mean() > 3 * d.std() / math.sqrt(len(d)), (d.mean(), d.std())


def test_spec_evaluates_samples_and_visualizes(trained):
    spec, model, valid, _, _, out = trained
    metrics = spec.evaluate(model, "test")
    assert set(metrics) == {"test_elbo", "test_nll_iwae", "iwae_k"} and metrics["iwae_k"] == 20
    assert -metrics["test_nll_iwae"] > metrics["test_elbo"]  # the IWAE bound is the tighter one
    assert set(spec.evaluate(model, "valid")) == {"valid_elbo"}  # IWAE only on the test split by default
    path = spec.visualize(model, str(out), n=16)
    assert path.endswith("samples.png") and (out / "samples.png").stat().st_size > 0
    assert (out / "reconstructions.png").stat().st_size > 0


def test_sample_and_reconstruct(trained):
    _, model, valid, *_ = trained
    x = model.sample(10, generator=sg.Generator(0)).numpy()
    assert x.shape == (10, 784) and set(np.unique(x)) <= {0.0, 1.0}
    means = model.sample(10, generator=sg.Generator(0), mean=True).numpy()
    assert means.shape == (10, 784) and np.all((means >= 0) & (means <= 1))
    x = valid[:100]
    recon = model.reconstruct(x).numpy()
    assert recon.shape == (100, 784)
    # The code carries the digit: each reconstruction is closer to its own input than to the others.
    dist = ((recon[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # (reconstruction i, input j)
    own, others = np.diag(dist), (dist.sum(1) - np.diag(dist)) / 99
    assert np.mean(own < others) > 0.8 and own.mean() < 0.8 * others.mean(), (own.mean(), others.mean())
