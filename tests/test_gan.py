"""GAN, conditional GAN, WGAN and WGAN-GP: the losses against hand computation, the gradient
penalty's gradient against finite differences, clipping, conditioning, a short toy run, and
training through the command line (with an exact resume)."""
import contextlib
import json
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import cli, checkpoint, nn, optim
from scratchgen.data import eight_gaussians
from scratchgen.metrics import toy_mode_coverage
from scratchgen.models.gan import (GAN, Discriminator, Generator, HingeGAN, gan_discriminator_loss, gan_generator_loss,
                                   one_hot)
from scratchgen.specs.gan import AdversarialOptimizer, train_step
from scratchgen.models.wgan import WGAN, WGANGP, gradient_penalty, make_objective, toy_networks


@contextlib.contextmanager
def parameters_replaced(module, tensors):
    """Run `module` with its parameters swapped for `tensors` (like torch.func.functional_call),
    so that a function of the weights can be handed to sg.gradcheck."""
    slots = []
    for (name, _), t in zip(module.named_parameters(), tensors):
        owner = module
        *path, leaf = name.split(".")
        for part in path:
            owner = getattr(owner, part)
        slots.append((owner, leaf, owner._parameters[leaf]))
        owner._parameters[leaf] = t
    try:
        yield module
    finally:
        for owner, leaf, p in slots:
            owner._parameters[leaf] = p


def f64(x):
    return sg.tensor(np.asarray(x, np.float64))


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


class FirstColumn(nn.Module):
    """A 'discriminator' whose output is the first input column: it returns chosen logits."""

    def forward(self, x):
        return x[:, 0]


# -- the gradient penalty ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_gradient_of_gradient_penalty_wrt_critic_weights_matches_finite_differences(activation):
    sg.manual_seed(0)
    rng = np.random.default_rng(0)
    critic = Discriminator(3, (6, 5), activation=activation).double()
    weights = [p.data.copy() for p in critic.parameters()]
    real, fake = f64(rng.standard_normal((4, 3))), f64(rng.standard_normal((4, 3)))
    eps = f64(rng.random(4))

    def penalty(*w):
        with parameters_replaced(critic, w):
            return gradient_penalty(critic, real, fake, epsilon=eps)[0]

    assert penalty(*[f64(w) for w in weights]).item() > 1e-3  # a penalty that is not trivially zero
    assert sg.gradcheck(penalty, weights)


def test_gradient_of_whole_wgan_gp_critic_loss_matches_finite_differences():
    rng = np.random.default_rng(1)
    G, D = Generator(2, (4,), 3, output=None).double(), Discriminator(3, (5, 5), activation="tanh").double()
    model = WGANGP(G, D, latent_dim=2, gp_weight=10.0)
    real, fake = f64(rng.standard_normal((5, 3))), f64(rng.standard_normal((5, 3)))
    weights = [p.data.copy() for p in D.parameters()]

    def critic_loss(*w):
        sg.manual_seed(0)  # the same interpolation epsilons at every evaluation
        with parameters_replaced(D, w):
            return model.discriminator_loss(real, fake)[0]

    assert sg.gradcheck(critic_loss, weights)


@pytest.mark.parametrize("scale, expected", [(1.0, 4.0), (1 / 6, 0.25)])
def test_gradient_penalty_of_a_linear_critic_is_two_sided(scale, expected):
    # f(x) = w.x + b has gradient w everywhere: the penalty is (||w|| - 1)^2 for any x^,
    # also when ||w|| < 1 (a one-sided penalty would give 0 there).
    critic = Discriminator(4, (), activation="relu").double()
    critic.net[0].weight.data[...] = scale * np.array([[1.0, 2.0, -2.0, 0.0]])  # norm 3 * scale
    rng = np.random.default_rng(2)
    penalty, _ = gradient_penalty(critic, f64(rng.standard_normal((6, 4))), f64(rng.standard_normal((6, 4))))
    assert penalty.item() == pytest.approx(expected)


def test_gradient_penalty_where_a_relu_critic_is_flat():
    # Every hidden unit is max(x_0, 0): for x_0 < 0 the critic is constant, its gradient 0, and
    # ||0|| must not turn the penalty's gradient into nan (0 * inf); elsewhere the gradient norm is 3.
    critic = Discriminator(2, (4,), activation="relu").double()
    critic.net[0].weight.data[...] = [[1.0, 0.0]] * 4
    critic.net[0].bias.data[...] = 0.0
    critic.net[2].weight.data[...] = 0.75
    weights = [p.data.copy() for p in critic.parameters()]
    real, fake = f64([[-1.0, 0.3], [1.0, -0.2]]), f64([[-2.0, 0.5], [2.0, 0.1]])

    def penalty(*w):
        with parameters_replaced(critic, w):
            return gradient_penalty(critic, real, fake, epsilon=[0.5, 0.5])[0]

    p = penalty(*[f64(w) for w in weights])
    assert p.item() == pytest.approx(((0 - 1) ** 2 + (3 - 1) ** 2) / 2)
    leaves = [f64(w).requires_grad_() for w in weights]
    grads = sg.grad(penalty(*leaves), leaves, allow_unused=True)  # biases only move the kinks
    assert all(g is None or np.isfinite(g.numpy()).all() for g in grads) and grads[0] is not None
    assert sg.gradcheck(penalty, weights)


def test_one_interpolation_epsilon_per_sample():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    critic = Discriminator(3, (4,)).double()
    eps = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    _, x_hat = gradient_penalty(critic, f64(real), f64(fake), epsilon=eps)
    np.testing.assert_allclose(x_hat.data, eps[:, None] * real + (1 - eps[:, None]) * fake)
    # Drawn by default: x^ - fake = eps_i (real - fake), one eps_i in [0, 1) per row.
    _, x_hat = gradient_penalty(critic, f64(real), f64(fake))
    ratio = (x_hat.data - fake) / (real - fake)
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones((1, 3)), rtol=1e-9)
    assert np.all((ratio >= 0) & (ratio < 1)) and len(np.unique(ratio[:, 0].round(12))) == 5


# -- losses against hand computation ----------------------------------------------------------------
A_REAL = np.array([2.0, -0.5, 0.3, 4.0])
A_FAKE = np.array([-1.5, 0.2, -3.0, 1.0])


def logits_batch(a):
    return f64(np.stack([a, np.zeros_like(a)], axis=1))  # FirstColumn reads column 0


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_gan_discriminator_loss_by_hand(smoothing):
    model = GAN(Generator(2, (3,), 2, output=None), FirstColumn(), latent_dim=2, label_smoothing=smoothing)
    loss, stats = model.discriminator_loss(logits_batch(A_REAL), logits_batch(A_FAKE))
    expected = (-np.mean((1 - smoothing) * np.log(sigmoid(A_REAL)) + smoothing * np.log(1 - sigmoid(A_REAL)))
                - np.mean(np.log(1 - sigmoid(A_FAKE))))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats["d_real"] == pytest.approx(sigmoid(A_REAL).mean())
    assert stats["d_fake"] == pytest.approx(sigmoid(A_FAKE).mean())
    assert gan_discriminator_loss(f64(A_REAL), f64(A_FAKE), smoothing).item() == pytest.approx(expected, rel=1e-12)


def test_gan_generator_losses_by_hand():
    a = f64(A_FAKE)
    assert gan_generator_loss(a).item() == pytest.approx(-np.mean(np.log(sigmoid(A_FAKE))), rel=1e-12)
    saturating = np.mean(np.log(1 - sigmoid(A_FAKE)))
    assert gan_generator_loss(a, saturating=True).item() == pytest.approx(saturating, rel=1e-12)
    model = GAN(Generator(2, (3,), 2, output=None), FirstColumn(), 2, generator_loss="saturating")
    assert model.generator_loss(logits_batch(A_FAKE)).item() == pytest.approx(np.mean(np.log(1 - sigmoid(A_FAKE))))
    with pytest.raises(ValueError, match="saturating"):
        GAN(Generator(2, (3,), 2), FirstColumn(), 2, generator_loss="minimax")


@pytest.mark.parametrize("fraction, kept", [(1.0, [0, 1, 2, 3]), (0.5, [1, 3]), (0.3, [1, 3]), (0.1, [3])])
def test_top_k_generator_loss_learns_from_the_most_realistic_samples_only(fraction, kept):
    # Sinha et al. 2020: L_G over the ceil(k N) samples with the largest logits; the rest get no gradient.
    model = GAN(Generator(2, (3,), 2, output=None), FirstColumn(), 2, top_k=fraction)
    fake = sg.tensor(np.stack([A_FAKE, np.zeros_like(A_FAKE)], axis=1), requires_grad=True)
    loss = model.generator_loss(fake)
    assert loss.item() == pytest.approx(-np.mean(np.log(sigmoid(A_FAKE[kept]))), rel=1e-12)
    grad, = sg.grad(loss, fake)
    assert sorted(np.flatnonzero(grad.numpy()[:, 0])) == kept
    with pytest.raises(ValueError, match="top_k"):
        GAN(Generator(2, (3,), 2), FirstColumn(), 2, top_k=0.0)


def test_non_saturating_loss_keeps_gradients_where_the_saturating_one_vanishes():
    # Early in training D rejects samples confidently (a << 0): Goodfellow et al., Section 3.
    a = sg.tensor(np.full(4, -8.0), requires_grad=True)
    g_ns, = sg.grad(gan_generator_loss(a), a)
    g_sat, = sg.grad(gan_generator_loss(a, saturating=True), a)
    np.testing.assert_allclose(g_ns.numpy(), -(1 - sigmoid(-8.0)) / 4)
    np.testing.assert_allclose(g_sat.numpy(), -sigmoid(-8.0) / 4)
    assert abs(g_ns.numpy()[0]) > 1000 * abs(g_sat.numpy()[0])


def test_hinge_losses_by_hand():
    # Lim & Ye 2017 / Miyato et al. 2018: L_D = E relu(1 - D(x)) + E relu(1 + D(G(z))), L_G = -E D(G(z)).
    model = HingeGAN(Generator(2, (3,), 2, output=None), FirstColumn(), 2)
    real, fake = logits_batch(A_REAL), logits_batch(A_FAKE)
    loss, stats = model.discriminator_loss(real, fake)
    expected = np.maximum(0, 1 - A_REAL).mean() + np.maximum(0, 1 + A_FAKE).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats["d_real"] == pytest.approx(A_REAL.mean()) and stats["d_fake"] == pytest.approx(A_FAKE.mean())
    assert model.generator_loss(fake).item() == pytest.approx(-A_FAKE.mean())
    assert isinstance(make_objective("hinge", Generator(2, (3,), 2), FirstColumn(), 2), HingeGAN)


def test_hinge_discriminator_ignores_examples_beyond_the_margin():
    real = sg.tensor(np.array([[2.0], [0.5]]), requires_grad=True)   # the first is past the margin 1
    fake = sg.tensor(np.array([[-3.0], [0.0]]), requires_grad=True)  # so is the first here (below -1)
    model = HingeGAN(Generator(2, (3,), 2, output=None), FirstColumn(), 2)
    loss, _ = model.discriminator_loss(real, fake)
    g_real, g_fake = sg.grad(loss, [real, fake])
    np.testing.assert_allclose(g_real.numpy()[:, 0], [0.0, -0.5])
    np.testing.assert_allclose(g_fake.numpy()[:, 0], [0.0, 0.5])


def test_wgan_losses_by_hand():
    model = WGAN(Generator(2, (3,), 2, output=None), FirstColumn(), 2)
    loss, stats = model.discriminator_loss(logits_batch(A_REAL), logits_batch(A_FAKE))
    assert loss.item() == pytest.approx(A_FAKE.mean() - A_REAL.mean())
    assert stats["wasserstein"] == pytest.approx(A_REAL.mean() - A_FAKE.mean())
    assert model.generator_loss(logits_batch(A_FAKE)).item() == pytest.approx(-A_FAKE.mean())


def test_wgan_gp_loss_adds_lambda_times_penalty():
    critic = Discriminator(2, (), activation="relu").double()
    critic.net[0].weight.data[...] = [[3.0, 0.0]]   # gradient norm 3: penalty (3 - 1)^2 = 4
    critic.net[0].bias.data[...] = 0.5
    model = WGANGP(Generator(2, (3,), 2, output=None), critic, 2, gp_weight=10.0)
    real, fake = logits_batch(A_REAL / 3), logits_batch(A_FAKE / 3)  # critic values = A_REAL + 0.5, ...
    loss, stats = model.discriminator_loss(real, fake)
    assert stats["gp"] == pytest.approx(4.0)
    assert loss.item() == pytest.approx(A_FAKE.mean() - A_REAL.mean() + 10.0 * 4.0)


# -- conditional GAN -------------------------------------------------------------------------------
def test_conditional_networks_concatenate_one_hot_labels():
    G = Generator(64, (256, 256), 784, num_classes=10)
    D = Discriminator(784, (256, 256), num_classes=10)
    assert G.net[0].weight.shape == (256, 64 + 10) and D.net[0].weight.shape == (256, 784 + 10)
    z, y = sg.randn(5, 64), np.array([0, 3, 9, 3, 1])
    x = G(z, y)
    assert x.shape == (5, 784) and D(x, y).shape == (5,)
    # The first layer sees exactly [z, onehot(y)].
    joint = np.concatenate([z.numpy(), np.eye(10, dtype=np.float32)[y]], axis=1)
    np.testing.assert_allclose(x.detach().numpy(), G.net(sg.tensor(joint)).detach().numpy(), rtol=1e-6)
    assert not np.allclose(G(z, np.zeros(5, int)).detach().numpy(), x.detach().numpy())
    np.testing.assert_array_equal(one_hot(y, 10).numpy(), np.eye(10)[y])
    with pytest.raises(ValueError, match="needs labels"):
        G(z)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        one_hot(np.array([10]), 10)


def test_conditional_gan_samples_by_class_and_trains():
    sg.manual_seed(0)
    model = GAN(Generator(8, (16,), 6, num_classes=3), Discriminator(6, (16,), num_classes=3), 8, num_classes=3)
    assert model.sample(7).shape == (7, 6)
    opt = AdversarialOptimizer(optim.Adam(model.generator.parameters(), lr=1e-3),
                               optim.Adam(model.discriminator.parameters(), lr=1e-3))
    before = [p.data.copy() for p in model.parameters()]
    stats = train_step(model, opt, sg.rand(10, 6) * 2 - 1, sg.tensor(np.arange(10) % 3))
    assert set(stats) == {"g_loss", "d_loss", "d_real", "d_fake"}
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))  # both players moved


def test_conditional_gan_learns_a_different_distribution_per_label():
    """Four labels, four clusters: after 600 steps G(z | y) lands on cluster y for every y."""
    sg.manual_seed(0)
    centers = np.array([[2, 0], [-2, 0], [0, 2], [0, -2]], np.float32)
    model = GAN(Generator(8, (32, 32), 2, num_classes=4, output=None), Discriminator(2, (32, 32), num_classes=4),
                latent_dim=8, num_classes=4)
    opt = AdversarialOptimizer(optim.Adam(model.generator.parameters(), lr=1e-3, betas=(0.5, 0.999)),
                               optim.Adam(model.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999)))
    rng = np.random.default_rng(0)
    for _ in range(600):
        y = rng.integers(0, 4, 64)
        x = centers[y] + 0.1 * rng.standard_normal((64, 2)).astype(np.float32)
        train_step(model, opt, sg.tensor(x), sg.tensor(y))
    for k in range(4):
        samples = model.sample(200, np.full(200, k)).numpy()
        assert np.linalg.norm(samples.mean(axis=0) - centers[k]) < 0.3, k


# -- WGAN weight clipping ----------------------------------------------------------------------------
def test_weight_clipping_keeps_every_critic_parameter_in_range():
    sg.manual_seed(0)
    G, D = toy_networks((32, 32))
    model = WGAN(G, D, latent_dim=2, clip_value=0.01)
    assert max(np.abs(p.data).max() for p in D.parameters()) > 0.1   # PyTorch's init exceeds c
    opt = AdversarialOptimizer(optim.RMSProp(G.parameters(), lr=5e-3), optim.RMSProp(D.parameters(), lr=5e-3))
    x, _ = eight_gaussians(5 * 64, seed=0)
    g_before = [p.data.copy() for p in G.parameters()]
    for _ in range(3):
        train_step(model, opt, sg.tensor(x))
        values = np.concatenate([p.data.ravel() for p in D.parameters()])
        assert values.min() >= -0.01 and values.max() <= 0.01
        assert np.mean(np.abs(values) == np.float32(0.01)) > 0.1    # the constraint is active
    assert max(np.abs(p.data).max() for p in G.parameters()) > 0.1   # the generator is never clipped
    assert any(not np.array_equal(a, p.data) for a, p in zip(g_before, G.parameters()))


def test_critic_takes_n_critic_steps_per_generator_step():
    sg.manual_seed(0)
    G, D = toy_networks((8,))
    model = make_objective("wgan_gp", G, D, 2)
    assert model.n_critic == 5
    opt = AdversarialOptimizer(optim.Adam(G.parameters(), lr=1e-4), optim.Adam(D.parameters(), lr=1e-4))
    train_step(model, opt, sg.tensor(eight_gaussians(5 * 16, seed=0)[0]))
    train_step(model, opt, sg.tensor(eight_gaussians(5 * 16, seed=1)[0]))
    steps = lambda o: {int(s["step"]) for s in o.state.values()}  # noqa: E731
    assert steps(opt.discriminator) == {10} and steps(opt.generator) == {2}


# -- a short toy run -----------------------------------------------------------------------------------
def test_wgan_gp_on_eight_gaussians_improves_mode_coverage():
    """400 generator steps of small 2-D WGAN-GP networks (lambda 1, Adam 1e-3): from no mode
    within 3 std to (almost) all eight, in a few seconds."""
    sg.manual_seed(0)
    G, D = toy_networks((64, 64, 64))
    model = WGANGP(G, D, latent_dim=2, gp_weight=1.0)
    opt = AdversarialOptimizer(optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9)),
                               optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9)))
    data, _ = eight_gaussians(20000, seed=0)
    start = toy_mode_coverage(model.sample(2500).numpy(), "eight_gaussians")
    rng = np.random.default_rng(0)
    for _ in range(400):
        train_step(model, opt, sg.tensor(data[rng.integers(0, len(data), 5 * 64)]))
    end = toy_mode_coverage(model.sample(2500).numpy(), "eight_gaussians")
    assert start["modes_covered"] == 0 and start["high_quality"] == 0.0
    assert end["modes_covered"] >= 6 and end["high_quality"] >= 0.02


# -- through the command line ---------------------------------------------------------------------------
TOY = ["--no-progress", "--seed", "0", "--batch-size", "320", "--set", "hidden=[16,16]",
       "--set", "n_train=640", "--set", "eval_samples=300"]


def jsonl(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def test_cli_trains_wgan_gp_toy_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert cli.main(["train", "wgan_gp_toy", "--epochs", "2", "--out", str(straight)] + TOY) == 0
    records = jsonl(straight / "metrics.jsonl")
    assert {"train_loss", "train_d_loss", "train_wasserstein", "train_gp", "valid_modes_covered",
            "valid_high_quality"} <= set(records[0])
    assert (straight / "samples.png").read_bytes()[:4] == b"\x89PNG"

    real_save = checkpoint.save_checkpoint

    def dying_save(path, model, *args, epoch=0, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_save(path, model, *args, epoch=epoch, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", dying_save)
    assert cli.main(["train", "wgan_gp_toy", "--epochs", "2", "--out", str(crashed)] + TOY) == 130
    monkeypatch.undo()
    assert cli.main(["train", "wgan_gp_toy", "--out", str(crashed), "--resume", "--no-progress"]) == 0
    a, b = jsonl(straight / "metrics.jsonl"), jsonl(crashed / "metrics.jsonl")
    for key in ("train_loss", "train_d_loss", "train_gp", "valid_d_real", "valid_high_quality"):
        assert [r[key] for r in a] == [r[key] for r in b], key  # both optimizers resumed exactly


def test_cli_trains_cgan_on_mnist(tmp_path, monkeypatch):
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)
    out = tmp_path / "cgan"
    args = ["train", "cgan", "--epochs", "1", "--out", str(out), "--limit-train", "256", "--limit-eval", "200",
            "--no-progress", "--set", "metric=none", "--set", "parzen_samples=300"]
    assert cli.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert math.isfinite(results["test_parzen_ll"]) and 0 < results["test_d_real"] < 1
    records = jsonl(out / "metrics.jsonl")
    assert records[0]["epoch"] == 1 and {"train_d_real", "train_d_fake", "valid_d_fake"} <= set(records[0])
    for name in ("samples.png", "nearest_neighbours.png", "adversarial_curves.png", "curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name


def test_discriminator_dropout_is_active_in_training_only():
    from scratchgen.models.gan import Discriminator
    sg.manual_seed(0)
    plain = Discriminator(6, (8, 8))
    dropped = Discriminator(6, (8, 8), dropout=0.5)
    for p, q in zip(dropped.parameters(), plain.parameters()):   # the same weights (Dropout has none)
        p.data[...] = q.data
    x = sg.tensor(np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32))
    assert sum(isinstance(m, sg.nn.Dropout) for m in dropped.modules()) == 2
    with sg.no_grad():
        a, b = dropped(x).numpy(), dropped(x).numpy()
        assert not np.allclose(a, b)                      # a fresh mask per call
        dropped.eval()
        np.testing.assert_allclose(dropped(x).numpy(), plain(x).numpy(), rtol=1e-6)


def test_wgan_gp_refuses_a_critic_with_dropout():
    from scratchgen.models.wgan import make_objective
    with pytest.raises(ValueError, match="deterministic"):
        make_objective("wgan_gp", Generator(4, (8,), 6), Discriminator(6, (8,), dropout=0.3), 4)
    make_objective("gan", Generator(4, (8,), 6), Discriminator(6, (8,), dropout=0.3), 4)
