"""Models, layers and optimizers on a GPU (CuPy arrays) against the same computation on the CPU, in
float64. Skipped without CuPy and a CUDA device (the `cp` fixture). The op-level GPU checks ride
along with the gradient tests: scratchgen.testing.check_gradients compares devices where a GPU exists.
"""
import copy

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn, optim
from scratchgen.autograd import grad
from scratchgen.models.dcgan import DCGANDiscriminator, DCGANGenerator
from scratchgen.models.gated_pixelcnn import GatedPixelCNN
from scratchgen.models.made import MADE
from scratchgen.models.mlp_classifier import MLPClassifier
from scratchgen.models.nice import NICE
from scratchgen.models.pixelcnn import PixelCNN
from scratchgen.models.vae import VAE
from scratchgen.models.wgan import gradient_penalty
from scratchgen.random import Generator

RNG = np.random.default_rng(0)


def binary(*shape):
    return (RNG.random(shape) < 0.4).astype(np.float64)


def loss_and_grads(model, loss_fn, inputs, device):
    """The loss and every parameter's gradient, as NumPy arrays, with model and inputs on `device`."""
    model = copy.deepcopy(model).to(device)
    xs = [sg.tensor(x, device=device) for x in inputs]
    loss = loss_fn(model, *xs)
    params = list(model.parameters())
    grads = grad(loss, params, allow_unused=True)
    assert loss.device == device
    return [loss.detach().numpy()] + [np.zeros(p.shape) if g is None else g.detach().numpy() for p, g in zip(params, grads)]


# Each case: a float64 model, a scalar loss of (model, *inputs), and the inputs.
MODEL_CASES = {
    "mlp_classifier": (lambda: MLPClassifier(12, (16, 8), 5).double(),
                       lambda m, x, y: sg.cross_entropy(m(x), y.astype(np.int64)),
                       lambda: [RNG.standard_normal((6, 12)), RNG.integers(0, 5, 6).astype(np.float64)]),
    "made_two_layers_direct": (lambda: MADE(10, [16, 12], natural_ordering=False, direct_connection=True,
                                            dtype=np.float64),
                               lambda m, x: -m.log_prob(x).mean(), lambda: [binary(7, 10)]),
    "nice_additive": (lambda: NICE(8, num_couplings=3, hidden=12, hidden_layers=2, dtype=np.float64),
                      lambda m, x: -m.log_prob(x).mean(), lambda: [RNG.random((5, 8))]),
    "nice_affine_gaussian": (lambda: NICE(8, num_couplings=2, hidden=12, hidden_layers=2, prior="gaussian",
                                          coupling="affine", dtype=np.float64),
                             lambda m, x: -m.log_prob(x).mean(), lambda: [RNG.random((5, 8))]),
    "pixelcnn": (lambda: PixelCNN(channels=8, blocks=2, out_channels=8).double(),
                 lambda m, x: m.nll(x).mean(), lambda: [binary(3, 1, 9, 9)]),
    "gated_pixelcnn": (lambda: GatedPixelCNN(channels=6, layers=3, out_channels=8).double(),
                       lambda m, x: m.nll(x).mean(), lambda: [binary(3, 1, 8, 8)]),
    "dcgan_generator_train_mode": (lambda: DCGANGenerator(latent_dim=5, channels=4).double(),
                                   lambda m, z: (m(z) ** 2).mean(), lambda: [RNG.standard_normal((4, 5))]),
    "dcgan_discriminator": (lambda: DCGANDiscriminator(channels=4).double(),
                            lambda m, x: sg.softplus(-m(x)).mean(), lambda: [RNG.uniform(-1, 1, (4, 784))]),
}


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_model_loss_and_gradients_match_cpu(cp, name):
    make_model, loss_fn, make_inputs = MODEL_CASES[name]
    model, inputs = make_model(), make_inputs()
    cpu = loss_and_grads(model, loss_fn, inputs, "cpu")
    gpu = loss_and_grads(model, loss_fn, inputs, "cuda")
    for i, (c, g) in enumerate(zip(cpu, gpu)):
        np.testing.assert_allclose(g, c, rtol=1e-9, atol=1e-11, err_msg=f"{name}: result {i} (0 is the loss)")


def test_vae_elbo_matches_cpu_with_the_same_noise(cp):
    vae = VAE(12, [10], 3, dtype=np.float64)
    x = binary(5, 12)
    eps = RNG.standard_normal((5, 3))

    def loss(m, x, eps):
        mu, logvar = m.encoder_heads(x)
        z = mu + (0.5 * logvar).exp() * eps   # the reparameterization, with noise fixed across devices
        nll = sg.binary_cross_entropy_with_logits(m.decoder_logits(z), x, reduction="none").sum(axis=1)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(axis=1)
        return (nll + kl).mean()

    for c, g in zip(loss_and_grads(vae, loss, [x, eps], "cpu"), loss_and_grads(vae, loss, [x, eps], "cuda")):
        np.testing.assert_allclose(g, c, rtol=1e-9, atol=1e-11)


def test_gradient_penalty_and_its_weight_gradient_match_cpu(cp):
    critic = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)).double()
    real, fake, eps = RNG.standard_normal((5, 6)), RNG.standard_normal((5, 6)), RNG.random(5)

    def loss(m, real, fake, eps):
        return gradient_penalty(lambda x: m(x).reshape(x.shape[0]), real, fake, epsilon=eps)[0]

    for c, g in zip(loss_and_grads(critic, loss, [real, fake, eps], "cpu"),
                    loss_and_grads(critic, loss, [real, fake, eps], "cuda")):
        np.testing.assert_allclose(g, c, rtol=1e-9, atol=1e-11)


OPTIMIZERS = {
    "sgd_momentum_nesterov": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "rmsprop": lambda p: optim.RMSprop(p, lr=1e-2, weight_decay=1e-2),
    "adam": lambda p: optim.Adam(p, lr=1e-2, betas=(0.5, 0.9), weight_decay=1e-3),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.1, lr_decay=1e-3, weight_decay=1e-3),
}


def train_steps(make_optimizer, device, steps=3):
    model = nn.Sequential(nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 3)).double()
    model.load_state_dict({k: np.asarray(v) + 0.0 for k, v in MODEL0.items()})
    model.to(device)
    opt = make_optimizer(model.parameters())
    x, y = sg.tensor(X, device=device), sg.tensor(Y, device=device)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return {k: sg.tensor(v).numpy() if not isinstance(v, np.ndarray) else v for k, v in model.cpu().state_dict().items()}


X, Y = RNG.standard_normal((8, 7)), RNG.standard_normal((8, 3))
MODEL0 = nn.Sequential(nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 3)).double().state_dict()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_match_cpu(cp, name):
    cpu, gpu = train_steps(OPTIMIZERS[name], "cpu"), train_steps(OPTIMIZERS[name], "cuda")
    for k in cpu:
        np.testing.assert_allclose(np.asarray(gpu[k]), np.asarray(cpu[k]), rtol=1e-10, atol=1e-12, err_msg=f"{name}: {k}")


def test_float32_training_on_gpu_tracks_the_cpu(cp):
    """Default dtype: a few Adam steps of an MLP agree to float32 precision."""
    def run(device):
        sg.manual_seed(0)
        model = MLPClassifier(12, (16,), 4).to(device)
        opt = optim.Adam(model.parameters(), lr=1e-2)
        x = sg.tensor(X[:, :7].repeat(2, axis=1)[:, :12].astype(np.float32), device=device)
        y = sg.tensor(np.arange(8) % 4, device=device)
        for _ in range(5):
            opt.zero_grad()
            loss = sg.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        assert model.net[0].weight.dtype == np.float32 and model.net[0].weight.device == device
        return float(loss.item())

    assert abs(run("cuda") - run("cpu")) < 1e-4


def test_state_dict_round_trip_between_devices(cp, tmp_path):
    model = MADE(6, [8], dtype=np.float64).to("cuda")
    path = tmp_path / "made.npz"
    sg.save(model.state_dict(), path)
    cpu_model = MADE(6, [8], dtype=np.float64)
    cpu_model.load_state_dict(sg.load(path))
    x = binary(4, 6)
    with sg.no_grad():
        np.testing.assert_allclose(model.log_prob(sg.tensor(x, device="cuda")).numpy(),
                                   cpu_model.log_prob(sg.tensor(x)).numpy(), rtol=1e-12)


def test_made_mask_resampling_on_gpu_builds_the_cpu_masks(cp):
    on_cpu = MADE(7, [9, 8], num_masks=3, natural_ordering=False, direct_connection=True, dtype=np.float64)
    on_gpu = MADE(7, [9, 8], num_masks=3, natural_ordering=False, direct_connection=True, dtype=np.float64)
    on_gpu.load_state_dict(on_cpu.state_dict())
    on_gpu.to("cuda")
    for k in (1, 2, 0):
        on_cpu.set_mask(k)
        on_gpu.set_mask(k)
        for a, b in zip(on_cpu.modules(), on_gpu.modules()):
            if hasattr(a, "mask"):
                assert b.mask.device == "cuda"
                np.testing.assert_array_equal(b.mask.numpy(), a.mask.numpy())
    x = binary(4, 7)
    with sg.no_grad():
        np.testing.assert_allclose(on_gpu.log_prob(sg.tensor(x, device="cuda")).numpy(),
                                   on_cpu.log_prob(sg.tensor(x)).numpy(), rtol=1e-12)


def test_sampling_on_gpu_matches_the_cpu_for_a_seed(cp):
    made = MADE(6, [8], dtype=np.float64)
    on_cpu = made.sample(5, generator=Generator(1)).numpy()
    s = made.to("cuda").sample(5, generator=Generator(1))
    assert s.device == "cuda" and s.shape == (5, 6) and set(np.unique(s.numpy())) <= {0.0, 1.0}
    np.testing.assert_array_equal(s.numpy(), on_cpu)
    pixelcnn = PixelCNN(channels=4, blocks=1, out_channels=4).double()
    on_cpu = pixelcnn.sample(3, shape=(4, 4), seed=2).numpy()
    np.testing.assert_array_equal(pixelcnn.to("cuda").sample(3, shape=(4, 4), seed=2).numpy(), on_cpu)
    gated = GatedPixelCNN(channels=4, layers=2, out_channels=4, num_classes=3).double().to("cuda")
    assert gated.sample(3, shape=(4, 4), seed=2).device == "cuda"
    nice = NICE(8, num_couplings=2, hidden=8, hidden_layers=1, dtype=np.float64).to("cuda")
    z = nice.sample(4)
    assert z.device == "cuda" and np.isfinite(z.numpy()).all()
    x = sg.tensor(RNG.random((3, 8)), device="cuda")
    with sg.no_grad():
        np.testing.assert_allclose(nice.inverse(nice(x)[0]).numpy(), x.numpy(), atol=1e-10)
    vae = VAE(6, [5], 2, dtype=np.float64).to("cuda")
    assert vae.sample(3).device == "cuda"


def test_conditional_gan_samples_on_gpu(cp):
    from scratchgen.models.gan import GAN, Discriminator, Generator
    gan = GAN(Generator(4, (8,), 6, num_classes=3), Discriminator(6, (8,), num_classes=3), 4, num_classes=3)
    s = gan.to("cuda").sample(5)
    assert s.device == "cuda" and s.shape == (5, 6) and np.isfinite(s.numpy()).all()


def test_gradient_checks_compare_devices_on_this_machine(cp):
    """Where a GPU exists, check_gradients also compares devices, and that comparison can fail."""
    from scratchgen.testing import check_same_on_gpu, gpu_available
    assert gpu_available()
    check_same_on_gpu(lambda x: (x * x).sum(axis=0), RNG.standard_normal((3, 2)))
    with pytest.raises(AssertionError, match="differs between CPU and GPU"):
        check_same_on_gpu(lambda x: x * (1.0 + 1e-6 * (x.device == "cuda")), RNG.standard_normal(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad,decoupled,wd", [(False, False, 0.0), (True, False, 1e-2), (False, True, 0.1),
                                                  (True, True, 0.1)])
def test_adam_cupy_kernel_matches_the_reference(cp, dtype, amsgrad, decoupled, wd):
    from scratchgen.kernels import optim_step as K
    n = 1000
    p, g, m = (RNG.standard_normal(n).astype(dtype) for _ in range(3))
    v, vmax = (np.abs(RNG.standard_normal(n)).astype(dtype) * s for s in (0.01, 0.02))
    cpu = [a.copy() for a in (p, m, v, vmax)]
    gpu = [cp.asarray(a) for a in (p, m, v, vmax)]
    for step in (1, 2, 3):
        hyper = dict(lr=1e-2, weight_decay=wd, step=step, amsgrad=amsgrad, decoupled=decoupled)
        K.adam(cpu[0], g, cpu[1], cpu[2], cpu[3], impl="numpy", **hyper)
        K.adam(gpu[0], cp.asarray(g), gpu[1], gpu[2], gpu[3], impl="cupy", **hyper)
    assert ("adam", amsgrad) in K._cupy_kernels
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for name, c, a in zip(("p", "m", "v", "vmax"), cpu, gpu):
        assert a.dtype == dtype
        np.testing.assert_allclose(cp.asnumpy(a), c, rtol=tol, atol=tol, err_msg=name)


def test_ema_on_gpu_parameters(cp):
    model = nn.Linear(3, 2).double().to("cuda")
    opt = optim.Adam(model.parameters(), lr=0.1)
    ema = optim.EMA(model.parameters(), decay=0.5)
    start = [p.detach().numpy() for p in model.parameters()]
    opt.zero_grad()
    model(sg.tensor(RNG.standard_normal((4, 3)), device="cuda")).sum().backward()
    opt.step()
    ema.update()
    live = [p.detach().numpy() for p in model.parameters()]
    with ema.average_parameters():
        for p, a, b in zip(model.parameters(), start, live):
            assert p.device == "cuda"
            np.testing.assert_allclose(p.detach().numpy(), 0.5 * a + 0.5 * b)
    for p, b in zip(model.parameters(), live):
        np.testing.assert_array_equal(p.detach().numpy(), b)
    state = ema.state_dict()
    assert all(isinstance(s, np.ndarray) for s in state["shadow"])
