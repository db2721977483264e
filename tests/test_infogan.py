"""InfoGAN: the code in the noise, both losses against hand computation, the mutual-information
term's gradient reaching the generator, and a short toy run in which Q learns to read the code."""
import numpy as np
import pytest

import scratchgen as sg
from scratchgen import optim
from scratchgen.data import eight_gaussians
from scratchgen.models.gan import Discriminator, Generator
from scratchgen.specs.gan import AdversarialOptimizer, generator_loss, train_step
from scratchgen.models.infogan import InfoDiscriminator, InfoGAN


def softplus(a):
    return np.logaddexp(0, a)


def log_softmax(a):
    return a - np.logaddexp.reduce(a, axis=1, keepdims=True)


def small_infogan(latent_dim=6, codes=3, dtype=np.float64, **options):
    sg.manual_seed(0)
    G, D = Generator(latent_dim, (8,), 2), InfoDiscriminator(2, (8, 7), codes=codes)
    if dtype == np.float64:
        G, D = G.double(), D.double()
    return InfoGAN(G, D, latent_dim, codes=codes, **options)


def test_noise_ends_with_the_one_hot_code_it_remembers():
    model = small_infogan()
    z = model.noise(500).numpy()
    assert z.shape == (500, 6)
    assert np.array_equal(z[:, 3:], np.eye(3)[model.last_codes])
    assert set(np.unique(model.last_codes)) == {0, 1, 2}
    assert abs(z[:, :3].std() - 1) < 0.1
    chosen = model.noise(4, codes=np.array([2, 0, 1, 2])).numpy()
    assert np.array_equal(chosen[:, 3:].argmax(1), [2, 0, 1, 2]) and list(model.last_codes) == [2, 0, 1, 2]


def test_losses_are_the_gan_losses_plus_lambda_times_the_code_cross_entropy():
    model = small_infogan(info_weight=0.7, label_smoothing=0.1)
    real = sg.tensor(np.random.default_rng(0).normal(size=(5, 2)))
    with sg.no_grad():
        fake = model(model.noise(5))
    codes = model.last_codes
    D = model.discriminator

    def affine(h, layer):
        return h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()

    def by_hand(x):   # Linear, LeakyReLU(0.2), Linear, LeakyReLU(0.2), Linear; column 0 is D, the rest Q
        h = x
        for layer in (D.net[0], D.net[2]):
            h = affine(h, layer)
            h = np.where(h > 0, h, 0.2 * h)
        out = affine(h, D.net[4])
        return out[:, 0], out[:, 1:]

    d_real, _ = by_hand(real.numpy())
    d_fake, q_fake = by_hand(fake.numpy())
    ce = -log_softmax(q_fake)[np.arange(5), codes].mean()
    gan_d = (0.9 * softplus(-d_real) + 0.1 * softplus(d_real)).mean() + softplus(d_fake).mean()
    loss, stats = model.discriminator_loss(real, fake)
    assert float(loss.item()) == pytest.approx(gan_d + 0.7 * ce, rel=1e-10)
    assert float(stats["info_loss"].item()) == pytest.approx(ce, rel=1e-10)
    assert float(model.generator_loss(fake).item()) == pytest.approx(softplus(-d_fake).mean() + 0.7 * ce, rel=1e-10)


def test_the_information_term_sends_gradient_to_the_generator():
    def g_grads(info_weight):
        model = small_infogan(info_weight=info_weight)
        sg.manual_seed(1)
        loss = generator_loss(model, 16)
        loss.backward()
        assert all(p.grad is None for p in model.discriminator.parameters())   # D is frozen for G's step
        return [p.grad.numpy().copy() for p in model.generator.parameters()]

    plain, with_info = g_grads(0.0), g_grads(1.0)
    assert any(not np.allclose(a, b) for a, b in zip(plain, with_info))


def test_q_learns_to_read_the_code_on_eight_gaussians():
    """300 steps of small 2-D networks: Q's accuracy on the generator's own samples goes from
    chance (1/4) to near certainty, i.e. I(c; G(z)) approaches H(c) = log 4."""
    sg.manual_seed(0)
    G = Generator(6, (64, 64), 2, activation="relu", output=None)
    D = InfoDiscriminator(2, (64, 64), codes=4, activation="relu")
    model = InfoGAN(G, D, 6, codes=4)
    opt = AdversarialOptimizer(optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9)),
                               optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9)))
    data, _ = eight_gaussians(20000, seed=0)
    rng = np.random.default_rng(0)

    def q_accuracy():
        with sg.no_grad():
            _, q = D.heads(model(model.noise(2000)))
        return float((q.numpy().argmax(1) == model.last_codes).mean())

    before = q_accuracy()
    for _ in range(300):
        stats = train_step(model, opt, sg.tensor(data[rng.integers(0, len(data), 64)]))
    assert before < 0.5
    assert q_accuracy() > 0.95 and stats["info_loss"] < 0.2


def test_clear_errors():
    G, D = Generator(6, (8,), 2), InfoDiscriminator(2, (8,), codes=3)
    with pytest.raises(ValueError, match=r"codes must be in \[2, latent_dim=6\), got 6"):
        InfoGAN(G, D, 6, codes=6)
    with pytest.raises(TypeError, match="needs a discriminator with a Q head .* got Discriminator"):
        InfoGAN(G, Discriminator(2, (8,)), 6, codes=3)
    model = InfoGAN(G, D, 6, codes=3)
    with pytest.raises(RuntimeError, match="codes of the last noise"):
        model.generator_loss(sg.tensor(np.zeros((4, 2), np.float32)))


def test_cli_trains_infogan_on_mnist(tmp_path, monkeypatch):
    import json
    from scratchgen import cli
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)   # the bundled subset
    out = tmp_path / "infogan"
    assert cli.main(["train", "infogan", "--epochs", "1", "--out", str(out), "--limit-train", "256",
                     "--limit-eval", "200", "--no-progress", "--set", "metric=none", "--set", "parzen_samples=0",
                     "--set", "codes=5"]) == 0
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < record["train_info_loss"] < 2 * np.log(5)   # cross-entropy of a 5-way code, from log 5 down
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
