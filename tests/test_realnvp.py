"""RealNVP for images: each layer inverts exactly, its log-det is the autograd Jacobian's, actnorm
initialises to zero mean and unit variance, bits/dim counts every Jacobian, the model trains,
and `scratchgen train realnvp` runs."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import cli
from scratchgen.linalg import jacobian
from scratchgen.models.realnvp import (ActNorm, ChannelCoupling, CheckerboardCoupling, RealNVP, bits_per_dim,
                                       split, squeeze, unsplit, unsqueeze)
from scratchgen.specs import create
from scratchgen.specs.settings import meaning, settings_of

SMALL = settings(max_examples=5, deadline=None)


def randomize(module, seed, std=0.3):
    """Non-trivial parameters everywhere (the zero-initialised output convolutions included), and
    every actnorm marked initialised so that a forward pass does not reset it."""
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] = rng.normal(0, std, p.shape).astype(p.dtype)
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.initialized.data[...] = 1
    return module


def brute_force_log_det(fn, x):
    """log|det J| of the flattened map fn at one input x (1, ...) from the autograd Jacobian."""
    def flat(v):
        out = fn(v)
        return sg.concatenate([o.reshape(1, -1) for o in out], axis=1) if isinstance(out, list) else out
    J = jacobian(flat, sg.tensor(x)).detach().numpy()
    d = x.size
    sign, logabs = np.linalg.slogdet(J.reshape(d, d))
    assert sign != 0
    return logabs


def check_layer(layer, x, tol=1e-10):
    """inverse(forward(x)) == x, and the log-det of forward equals the Jacobian's, per example."""
    with sg.no_grad():
        y, logdet = layer(sg.tensor(x))
        back = layer.inverse(y)
    np.testing.assert_allclose(back.numpy(), x, atol=tol, rtol=0)
    logdet = np.broadcast_to(logdet.numpy(), (len(x),))
    for i in range(len(x)):
        expected = brute_force_log_det(lambda v: layer(v)[0], x[i:i + 1])
        assert logdet[i] == pytest.approx(expected, abs=1e-8)


@SMALL
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.sampled_from([2, 4, 6]), w=st.sampled_from([2, 4]),
       seed=st.integers(0, 99))
def test_squeeze_and_split_invert_exactly(n, c, h, w, seed):
    x = np.random.default_rng(seed).normal(size=(n, c, h, w))
    s = squeeze(sg.tensor(x))
    assert s.shape == (n, 4 * c, h // 2, w // 2)
    np.testing.assert_array_equal(np.sort(s.numpy(), axis=None), np.sort(x, axis=None))   # a permutation
    np.testing.assert_array_equal(unsqueeze(s).numpy(), x)
    kept, z = split(s)
    assert kept.shape == z.shape == (n, 2 * c, h // 2, w // 2)
    np.testing.assert_array_equal(unsplit(kept, z).numpy(), s.numpy())


def test_squeeze_turns_each_2x2_block_into_channels():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    s = squeeze(sg.tensor(x)).numpy()
    np.testing.assert_array_equal(s[0, :, 0, 0], [0, 1, 4, 5])       # the top-left block
    np.testing.assert_array_equal(s[0, :, 1, 1], [10, 11, 14, 15])   # the bottom-right block


@SMALL
@given(c=st.integers(1, 2), parity=st.integers(0, 1), seed=st.integers(0, 99))
def test_checkerboard_coupling_inverts_and_its_log_det_is_the_jacobians(c, parity, seed):
    sg.manual_seed(seed)
    layer = randomize(CheckerboardCoupling(c, 4, 1, parity, dtype=np.float64), seed)
    x = np.random.default_rng(seed).normal(size=(2, c, 4, 4))
    check_layer(layer, x)
    with sg.no_grad():
        y = layer(sg.tensor(x))[0].numpy()
    i, j = np.indices((4, 4))
    kept = (i + j) % 2 == parity
    np.testing.assert_array_equal(y[:, :, kept], x[:, :, kept])       # the conditioning pixels pass unchanged
    assert not np.allclose(y[:, :, ~kept], x[:, :, ~kept])


@SMALL
@given(c=st.sampled_from([2, 4]), parity=st.integers(0, 1), seed=st.integers(0, 99))
def test_channel_coupling_inverts_and_its_log_det_is_the_jacobians(c, parity, seed):
    sg.manual_seed(seed)
    layer = randomize(ChannelCoupling(c, 4, 1, parity, dtype=np.float64), seed)
    x = np.random.default_rng(seed).normal(size=(2, c, 2, 4))
    check_layer(layer, x)
    with sg.no_grad():
        y = layer(sg.tensor(x))[0].numpy()
    same = slice(0, c // 2) if parity == 0 else slice(c // 2, c)
    np.testing.assert_array_equal(y[:, same], x[:, same])


@SMALL
@given(c=st.integers(1, 3), seed=st.integers(0, 99))
def test_actnorm_inverts_and_its_log_det_is_the_jacobians(c, seed):
    layer = randomize(ActNorm(c, dtype=np.float64), seed)
    check_layer(layer, np.random.default_rng(seed).normal(size=(2, c, 2, 3)))


@SMALL
@given(c=st.integers(1, 4), seed=st.integers(0, 99))
def test_actnorm_initialises_to_zero_mean_and_unit_variance_per_channel(c, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.normal(0, 5, (1, c, 1, 1)), rng.uniform(0.1, 10, (1, c, 1, 1)), size=(16, c, 3, 3))
    layer = ActNorm(c, dtype=np.float64)
    y, logdet = layer(sg.tensor(x))
    np.testing.assert_allclose(y.detach().numpy().mean(axis=(0, 2, 3)), 0, atol=1e-10)
    std = x.std(axis=(0, 2, 3))
    np.testing.assert_allclose(y.detach().numpy().std(axis=(0, 2, 3)), 1, rtol=1e-4)
    np.testing.assert_allclose(y.detach().numpy().std(axis=(0, 2, 3)), std / (std + 1e-6), rtol=1e-12)  # eps 1e-6
    assert logdet.item() == pytest.approx(-9 * np.log(x.std(axis=(0, 2, 3)) + 1e-6).sum())
    y2, _ = layer(sg.tensor(x + 100))   # initialised once only
    np.testing.assert_allclose(y2.detach().numpy(), y.detach().numpy() + 100 / (x.std(axis=(0, 2, 3)) + 1e-6)
                               [None, :, None, None], rtol=1e-10)
    assert layer.state_dict()["initialized"] == 1


def tiny_realnvp(seed, shape=(1, 4, 4), scales=2, couplings=1):
    sg.manual_seed(seed)
    return randomize(RealNVP(shape, scales=scales, channels=4, blocks=1, couplings=couplings, dtype=np.float64),
                     seed, std=0.2)


@SMALL
@given(seed=st.integers(0, 99), scales=st.integers(1, 2))
def test_whole_flow_inverts_and_its_log_det_is_the_jacobians(seed, scales):
    model = tiny_realnvp(seed, scales=scales)
    x = np.random.default_rng(seed).uniform(0.01, 0.99, size=(2, 1, 4, 4))
    with sg.no_grad():
        zs, logdet = model(sg.tensor(x))
        back = model.inverse(zs)
    assert [z.shape[1:] for z in zs] == [tuple(s) for s in model.z_shapes]
    assert sum(int(np.prod(s)) for s in model.z_shapes) == 16
    np.testing.assert_allclose(back.numpy(), x, atol=1e-10, rtol=0)
    for i in range(2):
        expected = brute_force_log_det(lambda v: model(v)[0], x[i:i + 1])   # logit transform included
        assert logdet.numpy()[i] == pytest.approx(expected, abs=1e-8)


def test_two_channel_images_and_three_scales():
    model = tiny_realnvp(3, shape=(2, 8, 8), scales=3)
    x = np.random.default_rng(0).uniform(0.01, 0.99, size=(2, 2, 8, 8))
    with sg.no_grad():
        zs, _ = model(sg.tensor(x))
        np.testing.assert_allclose(model.inverse(zs).numpy(), x, atol=1e-10, rtol=0)
    assert [z.shape[1:] for z in zs] == [(4, 4, 4), (8, 2, 2), (8, 2, 2)]


def test_bits_per_dim_counts_the_logit_the_scaling_and_the_dequantization():
    """A fresh model (couplings start at the identity, actnorm not yet initialised in eval mode) is
    the logit transform alone, so log p(x) and bits/dim can be written out by hand."""
    sg.manual_seed(0)
    model = RealNVP((1, 2, 2), scales=1, channels=4, blocks=1, couplings=1, alpha=0.05, dtype=np.float64).eval()
    x = np.array([[[[0.5 / 256, 100.5 / 256], [200.25 / 256, 255.9 / 256]]]])
    p = 0.05 + 0.9 * x
    y = np.log(p / (1 - p))
    log_normal = -0.5 * (y ** 2 + math.log(2 * math.pi))
    log_jacobian = np.log(0.9 / (p * (1 - p)))                # dy/dx of the logit transform
    ll = (log_normal + log_jacobian).sum()
    expected_bpd = (-ll + 4 * math.log(256)) / (4 * math.log(2))   # + the 1/256 scaling of 8-bit data
    with sg.no_grad():
        assert model.log_prob(sg.tensor(x)).item() == pytest.approx(ll, abs=1e-10)
        assert model.bits_per_dim(sg.tensor(x)).item() == pytest.approx(expected_bpd, abs=1e-10)
    assert bits_per_dim(ll, dim=4) == pytest.approx(expected_bpd, abs=1e-10)


def test_sample_is_finite_in_the_unit_interval_and_temperature_zero_is_the_mode_image():
    model = tiny_realnvp(1, shape=(1, 8, 8))
    xs = model.sample(5, generator=sg.Generator(0)).numpy()
    assert xs.shape == (5, 1, 8, 8) and np.all(np.isfinite(xs))
    assert xs.min() >= -0.06 and xs.max() <= 1.06   # the logit inverse maps onto [-alpha, 1 + alpha]/(1 - 2 alpha)
    cold = model.sample(3, temperature=0.0).numpy()
    np.testing.assert_allclose(cold, np.broadcast_to(cold[:1], cold.shape), atol=1e-12)


def test_trains_a_few_steps_with_the_loss_going_down():
    sg.manual_seed(0)
    model = RealNVP((1, 8, 8), scales=2, channels=8, blocks=1, couplings=1)
    rng = np.random.default_rng(0)
    base = (rng.random((1, 1, 8, 8)) > 0.5) * 0.8 + 0.1
    x = sg.tensor(np.clip(base + rng.normal(0, 0.03, (32, 1, 8, 8)), 0.001, 0.999).astype(np.float32))
    opt = sg.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[1] - 5   # the first step initialises actnorm


@pytest.mark.parametrize("name", ["realnvp", "glow"])
def test_every_setting_has_a_meaning(name):
    spec = create(name)
    missing = [k for k in settings_of(spec) if not meaning(spec, k)]
    assert not missing


def test_cli_trains_a_tiny_realnvp(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "realnvp", "--epochs", "1", "--limit-train", "64", "--limit-eval", "32", "--set", "channels=4",
            "--set", "blocks=1", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    text = json.dumps(results)
    assert "test_bits_per_dim" in text and "test_nll" in text
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
