"""The IAF posterior: log q(z|x) matches a brute-force change of variables, the bounds are ordered
and consistent, and the model trains."""
import json

import numpy as np
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import cli, optim
from scratchgen.linalg import jacobian
from scratchgen.models.iaf import IAFVAE
from scratchgen.random import Generator, manual_seed

LOG_2PI = np.log(2 * np.pi)


def shake(module, seed, scale=1.5):
    rng = np.random.default_rng(seed)
    with sg.no_grad():
        for p in module.parameters():
            p.data[...] = p.data * scale + 0.1 * rng.standard_normal(p.shape)
    return module


@settings(max_examples=10, deadline=None)
@given(latent=st.integers(2, 5), steps=st.integers(1, 3), width=st.integers(2, 10), seed=st.integers(0, 100))
def test_log_q_is_the_base_density_minus_the_brute_force_log_det(latent, steps, width, seed):
    model = shake(IAFVAE(6, [7], latent, num_steps=steps, iaf_hidden=[width], dtype=np.float64), seed)
    rng = np.random.default_rng(seed)
    x = sg.tensor((rng.random((1, 6)) < 0.5).astype(np.float64))
    eps = sg.tensor(rng.standard_normal((1, latent)))
    with sg.no_grad():
        z_T, log_q = model.posterior(x, eps)
        h = model.encoder(x)
        mu, sigma = model.enc_mu(h).numpy(), np.exp(0.5 * model.enc_logvar(h).numpy())

    def flow(z):   # z_0 -> z_T with the context held fixed
        for made in model.flows:
            z, _ = model.step(made, z, h)
        return z

    z0 = mu + sigma * eps.numpy()
    J = jacobian(flow, sg.tensor(z0)).numpy().reshape(latent, latent)
    sign, logdet = np.linalg.slogdet(J)
    base = -(np.log(sigma) + 0.5 * ((z0 - mu) / sigma) ** 2 + 0.5 * LOG_2PI).sum()
    with sg.no_grad():
        assert np.allclose(flow(sg.tensor(z0)).numpy(), z_T.numpy(), atol=1e-12)
    assert sign > 0
    assert abs(log_q.numpy()[0] - (base - logdet)) < 1e-10


def test_elbo_is_one_importance_weight_and_below_the_iwae_bound():
    model = shake(IAFVAE(10, [12], 3, num_steps=2, dtype=np.float64), 0)
    x = (np.random.default_rng(1).random((5, 10)) < 0.4).astype(np.float64)
    with sg.no_grad():
        # the ELBO's sample is the first importance sample of the same noise stream
        one = model.elbo(x, generator=Generator(3)).numpy()
        w1 = model.log_weights(x, 1, generator=Generator(3)).numpy()[0]
        assert np.allclose(one, w1, atol=1e-12)
        # on the same samples, log-mean-exp of the weights (L_k) is above their mean (the ELBO's average)
        w = model.log_weights(x, 200, generator=Generator(4)).numpy()
        iwae = model.log_likelihood(x, k=200, generator=Generator(4)).numpy()
    assert np.allclose(iwae, np.log(np.mean(np.exp(w), axis=0)), atol=1e-10)
    assert np.all(w.mean(axis=0) <= iwae)
    elbo_terms = model.elbo(x, generator=Generator(5), return_terms=True)
    elbo, rec, kl = (t.detach().numpy() for t in elbo_terms)
    assert np.allclose(elbo, rec - kl)


def test_training_lowers_the_loss_and_reaches_the_flow():
    manual_seed(0)   # the weights' initialisation, so the run is the same in any test order
    rng = np.random.default_rng(0)
    protos = (rng.random((4, 20)) < 0.5)
    data = np.where(rng.random((256, 20)) < 0.1, ~protos[rng.integers(4, size=256)],
                    protos[rng.integers(4, size=256)]).astype(np.float32)
    model = IAFVAE(20, [32], 4, num_steps=2)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(80):
        out = model.training_loss(data[rng.integers(256, size=64)], generator=Generator(step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 1.0
    grads = [p.grad for p in model.flows.parameters()]
    assert any(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)   # the IAF steps are trained too


def test_cli_trains_and_scores_iaf_vae(tmp_path):
    out = tmp_path / "iaf"
    argv = ["train", "iaf_vae", "--epochs", "1", "--limit-train", "64", "--limit-eval", "32", "--set", "hidden=[16]",
            "--set", "iwae_k=5", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    results = (out / "results.json").read_text()
    json.loads(results)
    assert "test_elbo" in results and "test_nll_iwae" in results
