"""DCGAN, the convolutional WGAN-GP critic and the convolutional VAE: shapes, the gradient
penalty's gradient through convolutions (double backward), and short training runs."""
import numpy as np
import pytest

import scratchgen as sg
from scratchgen import optim
from scratchgen.models.conv_vae import ConvVAE
from scratchgen.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from scratchgen.models.gan import GAN
from scratchgen.specs.gan import AdversarialOptimizer, train_step
from scratchgen.models.wgan import WGANGP, gradient_penalty

from test_gan import f64, parameters_replaced


def test_dcgan_players_shapes_and_initialisation():
    sg.manual_seed(0)
    G = dcgan_init_(DCGANGenerator(latent_dim=8, channels=4))
    D = dcgan_init_(DCGANDiscriminator(channels=4), seed=1)
    x = G(sg.randn(3, 8))
    assert x.shape == (3, 784) and float(x.abs().max().item()) <= 1.0
    assert D(x).shape == (3,)
    w = G.up[0].weight.data
    assert abs(w.std() - 0.02) < 0.005 and abs(w.mean()) < 0.005


def test_conv_critic_has_no_batch_norm_and_its_penalty_gradient_matches_finite_differences():
    # WGAN-GP differentiates grad_x D(x) w.r.t. D's weights: second order through conv2d.
    sg.manual_seed(0)
    rng = np.random.default_rng(0)
    critic = DCGANDiscriminator(channels=2, batch_norm=False).double()
    assert not any("BatchNorm" in type(m).__name__ for m in critic.modules())
    weights = [p.data.copy() for p in critic.parameters()]
    real, fake = f64(rng.standard_normal((2, 784))), f64(rng.standard_normal((2, 784)))
    eps = f64(rng.random(2))

    def penalty(*w):
        with parameters_replaced(critic, w):
            return gradient_penalty(critic, real, fake, epsilon=eps)[0]

    assert penalty(*[f64(w) for w in weights]).item() > 1e-3
    assert sg.gradcheck(penalty, weights, atol=1e-5, rtol=1e-3)


def test_dcgan_and_conv_wgan_gp_train_steps_run_and_change_both_players():
    sg.manual_seed(0)
    real = sg.tensor(np.random.default_rng(0).uniform(-1, 1, (10, 784)).astype(np.float32))
    for kind in ("gan", "wgan_gp"):
        G, D = DCGANGenerator(8, 4), DCGANDiscriminator(4, batch_norm=(kind == "gan"))
        model = GAN(G, D, 8) if kind == "gan" else WGANGP(G, D, 8, n_critic=2)
        opt = AdversarialOptimizer(optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9)),
                                   optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9)))
        named = [("G." + n, p) for n, p in G.named_parameters()] + [("D." + n, p) for n, p in D.named_parameters()]
        before = {n: p.data.copy() for n, p in named}
        stats = train_step(model, opt, real)
        assert np.isfinite(float(stats["d_loss"]))
        unchanged = {n for n, p in named if np.array_equal(before[n], p.data)}
        # A critic's output bias cancels in E f(fake) - E f(real) and the penalty ignores it.
        assert unchanged == ({"D.out.bias"} if kind == "wgan_gp" else set())


def test_conv_vae_bound_shapes_iwae_and_learning():
    sg.manual_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.random((16, 784)) < 0.3).astype(np.float32)
    model = ConvVAE(latent_dim=4, hidden=16)
    assert model.elbo(x).shape == (16,)
    with sg.no_grad():
        iwae = model.log_likelihood(x[:3], k=7).numpy()
        elbo = model.elbo(x[:3]).numpy()
    assert iwae.shape == (3,) and np.all(np.isfinite(iwae))
    assert model.sample(2).shape == (2, 784)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        opt.zero_grad()
        loss = model.training_loss(x)["loss"]
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.item())
    assert float(loss.item()) < first - 50  # 784 pixels: the bound improves by many nats quickly
    assert elbo.shape == (3,)


@pytest.mark.parametrize("name", ["dcgan", "wgan_gp_conv", "conv_vae", "pixelcnn", "gated_pixelcnn"])
def test_conv_models_are_registered(name):
    from scratchgen import specs as models
    spec = models.get(name)
    assert name in models.available() and spec.description


# -- through the command line, on tiny slices -------------------------------------------------------
def _cli_run(tmp_path, name, *settings, limit=("--limit-train", "128", "--limit-eval", "64")):
    import json
    from scratchgen import cli
    out = tmp_path / name
    args = ["train", name, "--epochs", "1", "--batch-size", "32", "--no-progress", "--out", str(out), *limit]
    for s in settings:
        args += ["--set", s]
    assert cli.main(args) == 0
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    return json.loads((out / "results.json").read_text())


def test_cli_trains_dcgan_and_conv_vae_on_the_bundled_subset(tmp_path, monkeypatch):
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)
    results = _cli_run(tmp_path, "dcgan", "metric=none", "parzen_samples=0", "channels=4", "latent_dim=8")
    assert 0 < results["test_d_real"] < 1
    results = _cli_run(tmp_path, "conv_vae", "binarization=dynamic", "hidden=16", "latent=2")
    assert -784 * 2 < results["test_elbo"] < 0
    for name in ("reconstructions", "interpolations", "latent_scatter", "manifold"):
        assert (tmp_path / "conv_vae" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name


def test_cli_trains_pixelcnn_and_gated_pixelcnn(tmp_path):
    from scratchgen.data import load_binarized_mnist
    try:
        load_binarized_mnist("valid")
    except FileNotFoundError:
        pytest.skip("binarized MNIST is not in $SCRATCHGEN_DATA (it has no bundled copy)")
    for name, size in (("pixelcnn", ["channels=4", "blocks=1", "out_channels=4"]),
                       ("gated_pixelcnn", ["channels=4", "layers=1", "out_channels=4"])):
        results = _cli_run(tmp_path, name, *size, limit=("--limit-train", "64", "--limit-eval", "32"))
        assert 0 < results["test_nll"] < 784 * 2  # nats per image: below twice a fair coin per pixel
