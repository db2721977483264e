"""The autoencoder and denoising autoencoder: the corruptions' laws (masking zeroes round(nu d)
components at uniformly random positions; Gaussian noise has mean 0 and std sigma; 'none' is the
identity and draws nothing), the loss against a hand-computed cross-entropy, learning on a toy
set, the shapes of both architectures, denoising beating the plain autoencoder on corrupted
inputs, and short command-line runs of both variants."""
import json
import math

import numpy as np
import pytest
import scipy.stats as st

import scratchgen as sg
from scratchgen import cli
from scratchgen.models.autoencoder import Autoencoder, corrupt, gaussian_noise, masking_noise
from scratchgen.specs import create

Z = 5.0  # tolerance of the statistical tests, in standard errors


# -- the corruptions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("nu", [0.1, 0.25, 0.5])
def test_masking_zeroes_a_fixed_fraction_at_uniformly_random_positions(nu):
    n, d = 4000, 784
    x = np.random.default_rng(0).uniform(0.1, 1.0, size=(n, d)).astype(np.float32)
    x_tilde = masking_noise(x, nu, np.random.default_rng(1))
    zero = x_tilde == 0
    k = round(nu * d)
    # Vincent et al.: a fixed number nu d of components per example is forced to 0...
    assert np.all(zero.sum(axis=1) == k)
    # ...and the others are left untouched.
    np.testing.assert_array_equal(x_tilde[~zero], x[~zero])
    # Each position is masked in a fraction nu of the examples: per-column counts are Binomial(n, k/d).
    p = k / d
    counts = zero.sum(axis=0)
    z = (counts - n * p) / math.sqrt(n * p * (1 - p))
    assert np.abs(z).max() < Z, np.abs(z).max()
    chi2 = float((z ** 2).sum())  # the row sums are fixed: d - 1 degrees of freedom
    assert st.chi2.sf(chi2, d - 1) > 1e-4 and st.chi2.cdf(chi2, d - 1) > 1e-4, chi2
    # Two positions are masked together as often as sampling without replacement says.
    both = (zero[:, 0] & zero[:, 1]).mean()
    pair = k * (k - 1) / (d * (d - 1))
    assert abs(both - pair) < Z * math.sqrt(pair * (1 - pair) / n), (both, pair)


def test_masking_edge_levels_and_shapes():
    x = np.random.default_rng(0).uniform(0.1, 1.0, size=(5, 1, 4, 4))
    np.testing.assert_array_equal(masking_noise(x, 0.0, np.random.default_rng(0)), x)
    assert np.all(masking_noise(x, 1.0, np.random.default_rng(0)) == 0)
    out = masking_noise(x, 0.5, np.random.default_rng(0))
    assert out.shape == x.shape and np.all((out == 0).reshape(5, -1).sum(axis=1) == 8)
    assert not np.any(x == 0)  # the input is not written
    with pytest.raises(ValueError, match="nu must lie in"):
        masking_noise(x, 1.5)


@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_gaussian_corruption_has_mean_zero_and_std_sigma(sigma):
    x = np.random.default_rng(0).random((1000, 784)).astype(np.float32)
    eps = gaussian_noise(x, sigma, np.random.default_rng(1)).astype(np.float64) - x
    assert eps.dtype == np.float64 and gaussian_noise(x, sigma).dtype == np.float32
    n = eps.size
    assert abs(eps.mean()) < Z * sigma / math.sqrt(n)
    # the sample variance of n normals has standard error sigma^2 sqrt(2 / (n - 1))
    assert abs(eps.var() - sigma ** 2) < Z * sigma ** 2 * math.sqrt(2 / (n - 1)), eps.std()
    # the noise does not depend on x (additive), and is not clipped to [0, 1]
    shifted = gaussian_noise(x + 1, sigma, np.random.default_rng(1)) - (x + 1)
    np.testing.assert_allclose(shifted, eps, atol=1e-5)
    assert eps.min() + x.min() < 0


def test_no_corruption_is_the_identity_and_draws_nothing():
    x = np.random.default_rng(0).random((10, 784)).astype(np.float32)
    g = np.random.default_rng(3)
    state = g.bit_generator.state
    assert corrupt(x, "none", 0.5, g) is x
    assert g.bit_generator.state == state
    # the other kinds do draw, and a scratchgen Generator works as well as a NumPy one
    np.testing.assert_array_equal(corrupt(x, "masking", 0.3, sg.Generator(3)),
                                  corrupt(x, "masking", 0.3, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="corruption must be one of"):
        corrupt(x, "salt", 0.1, g)


# -- the loss and the networks -----------------------------------------------------------------------------
def test_loss_is_the_hand_computed_cross_entropy_in_float64():
    """L_H(x, z) = -sum_k x_k log z_k + (1 - x_k) log(1 - z_k), z = sigmoid(decoder(encoder(x~))),
    computed here in NumPy from the weights: a 6-5-3-5-6 autoencoder with ReLU hidden layers and
    a linear code."""
    sg.manual_seed(0)
    model = Autoencoder(6, [5], 3, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, x_tilde = rng.random((7, 6)), rng.random((7, 6))
    def weights(linear):
        return linear.weight.detach().numpy(), linear.bias.detach().numpy()
    (W1, b1), (W2, b2) = weights(model.encoder[0]), weights(model.encoder[2])
    (W3, b3), (W4, b4) = weights(model.decoder[0]), weights(model.decoder[2])
    y = np.maximum(x_tilde @ W1.T + b1, 0) @ W2.T + b2
    z = 1 / (1 + np.exp(-(np.maximum(y @ W3.T + b3, 0) @ W4.T + b4)))
    expected = -(x * np.log(z) + (1 - x) * np.log(1 - z)).sum(axis=1)
    loss = model.loss(x, x_tilde)
    assert loss.dtype == np.float64
    np.testing.assert_allclose(loss.item(), expected.mean(), rtol=1e-12)
    np.testing.assert_allclose(model.reconstruction_bce(x, x_tilde).detach().numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(model.encode(x_tilde).numpy(), y, rtol=1e-12)
    np.testing.assert_allclose(model.reconstruct(x_tilde).numpy(), z, rtol=1e-12)
    # without x_input the model reconstructs x itself
    y0 = np.maximum(x @ W1.T + b1, 0) @ W2.T + b2
    z0 = 1 / (1 + np.exp(-(np.maximum(y0 @ W3.T + b3, 0) @ W4.T + b4)))
    np.testing.assert_allclose(model.loss(x).item(), -(x * np.log(z0) + (1 - x) * np.log(1 - z0)).sum(1).mean(),
                               rtol=1e-12)


@pytest.mark.parametrize("arch, hidden", [("mlp", [32, 16]), ("mlp", []), ("conv", [32]), ("conv", [32, 16])])
def test_output_shapes_of_both_architectures(arch, hidden):
    model = Autoencoder(784, hidden, 5, arch=arch, channels=4)
    x = np.random.default_rng(0).random((3, 784)).astype(np.float32)
    assert model(x).shape == (3, 5)
    assert model.decoder_logits(model(x)).shape == (3, 784)
    z = model.reconstruct(x).numpy()
    assert z.shape == (3, 784) and np.all((z > 0) & (z < 1))
    assert model.reconstruction_bce(x).shape == (3,) and model.loss(x).shape == ()
    model.loss(x).backward()
    assert all(p.grad is not None and np.any(p.grad.numpy() != 0) for p in model.parameters())


def test_conv_needs_28_by_28_images_and_a_hidden_layer():
    with pytest.raises(ValueError, match="28 x 28"):
        Autoencoder(100, [16], 2, arch="conv")
    with pytest.raises(ValueError, match="28 x 28"):
        Autoencoder(784, [], 2, arch="conv")
    with pytest.raises(ValueError, match="arch must be"):
        Autoencoder(784, [16], 2, arch="rnn")


# -- learning on a toy problem -----------------------------------------------------------------------------
def prototypes(n, seed, d=24, k=4):
    """n noisy copies of k fixed prototypes in {0.05, 0.95}^d (the same prototypes for any seed)."""
    protos = np.where(np.random.default_rng(100).random((k, d)) < 0.5, 0.05, 0.95)
    rng = np.random.default_rng(seed)
    x = protos[rng.integers(k, size=n)] + 0.03 * rng.standard_normal((n, d))
    return np.clip(x, 0, 1).astype(np.float32)


def entropy(x):
    """sum_k H(x_k) averaged over the rows: the least BCE of any reconstruction of x (at z = x)."""
    x = np.clip(x.astype(np.float64), 1e-12, 1 - 1e-12)
    return -(x * np.log(x) + (1 - x) * np.log(1 - x)).sum(axis=1).mean()


def train(corruption, nu, steps=400, seed=0):
    sg.manual_seed(seed)
    model = Autoencoder(24, [32], 4)
    opt = sg.optim.Adam(model.parameters(), lr=1e-2)
    data, noise = prototypes(256, seed=1), np.random.default_rng(seed + 1)
    losses = []
    for _ in range(steps):
        loss = model.loss(data, corrupt(data, corruption, nu, noise))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


def test_training_lowers_the_loss_below_the_best_code_free_reconstruction():
    model, losses = train("none", 0.0, steps=300)
    test = prototypes(500, seed=2)
    with sg.no_grad():
        before = Autoencoder(24, [32], 4).reconstruction_bce(test).mean().item()
        after = model.reconstruction_bce(test).mean().item()
    # A decoder that ignores the code does best with z = the mean image: the code must beat it.
    m = np.clip(prototypes(256, seed=1).mean(axis=0), 1e-6, 1 - 1e-6)
    constant = -(test * np.log(m) + (1 - test) * np.log(1 - m)).sum(axis=1).mean()
    floor = entropy(test)
    assert np.mean(losses[-20:]) < losses[0] - 5
    assert floor < after < constant - 3 < before, (floor, after, constant, before)


def test_denoising_autoencoder_reconstructs_clean_digits_from_masked_ones_better():
    """Trained to reconstruct x from a masked x~, the denoising autoencoder fills in the zeroed
    half of a held-out example from the other half; a plain autoencoder, trained on clean x,
    copies the zeros. (A loss that compared z with x~ instead of x would fail this too.)"""
    dae, _ = train("masking", 0.5)
    ae, _ = train("none", 0.0)
    clean = prototypes(500, seed=3)
    masked = masking_noise(clean, 0.5, np.random.default_rng(4))
    with sg.no_grad():
        dae_bce = dae.reconstruction_bce(clean, masked).mean().item()
        ae_bce = ae.reconstruction_bce(clean, masked).mean().item()
        ae_clean = ae.reconstruction_bce(clean).mean().item()
    floor = entropy(clean)  # BCE >= sum_k H(x_k), reached only by z = x: compare the excesses
    assert dae_bce - floor < 0.3 * (ae_bce - floor), (dae_bce, ae_bce, floor)
    assert ae_clean < ae_bce  # the plain autoencoder does reconstruct its own kind of input


def test_spec_corrupts_the_input_and_compares_with_the_clean_batch():
    spec = create("autoencoder", dict(corruption="masking", noise=0.3, hidden=[16], latent=2))
    sg.manual_seed(0)
    model = spec.build()
    x = prototypes(8, seed=0, d=784)
    expected = model.loss(x, masking_noise(x, 0.3, np.random.default_rng(spec.config["seed"] + 1))).item()
    assert spec.loss(model, (sg.tensor(x),)).item() == pytest.approx(expected, rel=1e-6)
    plain = create("autoencoder", dict(hidden=[16], latent=2))
    assert plain.loss(model, (sg.tensor(x),)).item() == pytest.approx(model.loss(x).item(), rel=1e-6)


# -- the command line ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [["arch=mlp", "corruption=gaussian", "noise=0.3"],
                                      ["arch=conv", "corruption=masking", "noise=0.25", "channels=4"]],
                         ids=["mlp-gaussian", "conv-masking"])
def test_train_sample_and_evaluate_from_the_command_line(settings, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)
    out = tmp_path / "run"
    flags = [f for s in settings + ["hidden=[32]", "latent=8"] for f in ("--set", s)]
    assert cli.main(["train", "autoencoder", "--epochs", "2", "--limit-train", "256", "--limit-eval", "100",
                     "--batch-size", "32", "--no-progress", "--out", str(out)] + flags) == 0
    results = json.loads((out / "results.json").read_text())
    with open(out / "metrics.jsonl") as f:
        valid = [json.loads(line)["valid_bce"] for line in f]
    assert valid[1] < valid[0] and results["best_valid_bce"] == valid[1]
    assert 0 < results["test_bce"] and 0 < results["test_mse"] < 784 and results["test_denoising_bce"] > 0
    for name in ("reconstructions.png", "latent_scatter.png", "curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert cli.main(["sample", str(out), "--n", "12", "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["evaluate", str(out), "--limit-eval", "100", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics == {k: v for k, v in results.items() if k.startswith("test_")}
