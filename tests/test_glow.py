"""Glow: the LU-parameterised 1x1 convolution, actnorm's data-dependent start, the steps and the
whole multi-scale flow invert exactly with the autograd Jacobian's log-det; bits/dim by hand;
training and `scratchgen train glow`."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import cli
from scratchgen.models import glow, realnvp
from scratchgen.models.glow import FlowStep, Glow, GlowCoupling, InvConv1x1
from test_realnvp import brute_force_log_det, check_layer, randomize

SMALL = settings(max_examples=5, deadline=None)


def test_glow_reuses_realnvps_squeeze_split_and_actnorm():
    assert glow.squeeze is realnvp.squeeze and glow.split is realnvp.split and glow.ActNorm is realnvp.ActNorm


@SMALL
@given(c=st.integers(1, 5), seed=st.integers(0, 99))
def test_inv_conv_log_det_is_h_w_slogdet_of_its_weight_and_it_inverts(c, seed):
    layer = randomize(InvConv1x1(c, dtype=np.float64, generator=sg.Generator(seed)), seed)
    W = layer.weight().detach().numpy()
    x = np.random.default_rng(seed).normal(size=(2, c, 2, 3))
    with sg.no_grad():
        y, logdet = layer(sg.tensor(x))
    assert logdet.item() == pytest.approx(6 * np.linalg.slogdet(W)[1], abs=1e-10)
    np.testing.assert_allclose(y.numpy(), np.einsum("ij,njhw->nihw", W, x), atol=1e-12)
    check_layer(layer, x)


def test_inv_conv_factors_start_from_a_rotation_with_p_fixed_and_l_unit_lower():
    layer = InvConv1x1(4, dtype=np.float64, generator=sg.Generator(0))
    W = layer.weight().detach().numpy()
    np.testing.assert_allclose(W @ W.T, np.eye(4), atol=1e-12)   # orthogonal: log-det 0 at the start
    assert layer.log_s.detach().numpy().sum() == pytest.approx(0, abs=1e-12)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"lower", "upper", "log_s"}                    # P and sign(s) are buffers, not learned
    # Only L's strict lower and U's strict upper triangle reach W: the rest gets no gradient.
    layer.weight().sum().backward()
    assert not np.triu(layer.lower.grad).any() and not np.tril(layer.upper.grad).any()


@SMALL
@given(c=st.sampled_from([2, 4]), seed=st.integers(0, 99))
def test_glow_coupling_and_flow_step_invert_with_the_jacobians_log_det(c, seed):
    sg.manual_seed(seed)
    x = np.random.default_rng(seed).normal(size=(2, c, 2, 2))
    check_layer(randomize(GlowCoupling(c, 4, dtype=np.float64), seed), x)
    check_layer(randomize(FlowStep(c, 4, dtype=np.float64, generator=sg.Generator(seed)), seed), x)


def test_first_forward_initialises_each_actnorm_to_zero_mean_unit_variance():
    sg.manual_seed(0)
    model = Glow((1, 4, 4), levels=2, steps=2, channels=4, dtype=np.float64)
    x = np.random.default_rng(0).random((32, 1, 4, 4)) * 0.3 + 0.2
    seen = []
    for step in (model.levels[0][1], model.levels[1][0]):
        original = step.norm.forward

        def spy(h, original=original):
            y, ld = original(h)
            seen.append(y.detach().numpy())
            return y, ld
        step.norm.forward = spy
    model(sg.tensor(x))
    assert len(seen) == 2
    for y in seen:
        np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-10)
        np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, atol=1e-4)


@SMALL
@given(seed=st.integers(0, 99), levels=st.integers(1, 2), logit_alpha=st.sampled_from([None, 0.05]))
def test_whole_glow_inverts_and_its_log_det_is_the_jacobians(seed, levels, logit_alpha):
    sg.manual_seed(seed)
    model = randomize(Glow((1, 4, 4), levels=levels, steps=2, channels=4, dtype=np.float64, logit_alpha=logit_alpha),
                      seed, std=0.2)
    x = np.random.default_rng(seed).random((2, 1, 4, 4))
    with sg.no_grad():
        zs, logdet = model(sg.tensor(x))
        back = model.inverse(zs)
    assert [z.shape[1:] for z in zs] == [tuple(s) for s in model.z_shapes]
    np.testing.assert_allclose(back.numpy(), x, atol=1e-10, rtol=0)
    for i in range(2):
        assert logdet.numpy()[i] == pytest.approx(brute_force_log_det(lambda v: model(v)[0], x[i:i + 1]), abs=1e-8)


def test_bits_per_dim_by_hand():
    """One level, one step, the 1x1 convolution set to the identity and actnorm not yet initialised
    (eval mode): the flow is x - 1/2, squeeze, and the second half of the channels times
    sigmoid(2) (the zero-initialised coupling), so log p(x) is a sum written out by hand."""
    model = Glow((1, 2, 2), levels=1, steps=1, channels=4, dtype=np.float64).eval()
    conv = model.levels[0][0].conv
    conv.p.data[...] = np.eye(4)
    conv.sign_s.data[...] = 1
    for p in (conv.lower, conv.upper, conv.log_s):
        p.data[...] = 0
    x = np.array([[[[3.5, 100.25], [200.5, 255.75]]]]) / 256
    h = (x - 0.5).reshape(4)                       # squeeze of a 2x2 image: the pixels in raster order
    scale = 1 / (1 + math.exp(-2))
    z = np.concatenate([h[:2], h[2:] * scale])
    ll = (-0.5 * (z ** 2 + math.log(2 * math.pi))).sum() + 2 * math.log(scale)
    bpd = (-ll + 4 * math.log(256)) / (4 * math.log(2))
    with sg.no_grad():
        assert model.log_prob(sg.tensor(x)).item() == pytest.approx(ll, abs=1e-12)
        assert model.bits_per_dim(sg.tensor(x)).item() == pytest.approx(bpd, abs=1e-12)


def test_sampling_at_a_temperature_scales_z():
    sg.manual_seed(0)
    model = randomize(Glow((1, 4, 4), levels=2, steps=1, channels=4, dtype=np.float64), 0, std=0.1)
    xs = model.sample(4, temperature=0.7, generator=sg.Generator(0)).numpy()
    assert xs.shape == (4, 1, 4, 4) and np.all(np.isfinite(xs))
    draw = sg.Generator(0).rng   # the same draws, scaled by hand
    zs = [sg.tensor(0.7 * draw.standard_normal((4,) + s)) for s in model.z_shapes]
    with sg.no_grad():
        np.testing.assert_allclose(xs, model.inverse(zs).numpy(), atol=1e-12)
    cold = model.sample(2, temperature=0.0).numpy()
    np.testing.assert_allclose(cold[0], cold[1], atol=1e-12)


def test_trains_a_few_steps_with_the_loss_going_down():
    sg.manual_seed(0)
    model = Glow((1, 8, 8), levels=2, steps=2, channels=8)
    rng = np.random.default_rng(0)
    base = (rng.random((1, 1, 8, 8)) > 0.5) * 0.8 + 0.1
    x = sg.tensor(np.clip(base + rng.normal(0, 0.03, (32, 1, 8, 8)), 0, 1).astype(np.float32))
    opt = sg.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[1] - 5


def test_cli_trains_a_tiny_glow(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "glow", "--epochs", "1", "--limit-train", "64", "--limit-eval", "32", "--set", "channels=4",
            "--set", "couplings=1", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    text = json.dumps(json.loads((out / "results.json").read_text()))
    assert "test_bits_per_dim" in text and "test_nll" in text
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    cooler = tmp_path / "cool.png"
    assert cli.main(["sample", str(out), "--n", "4", "--set", "temperature=0.5", "--out", str(cooler)]) == 0
    assert cooler.read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["sample", str(out), "--set", "temperature=hot"]) != 0
    assert "temperature" in capsys.readouterr().err
    assert cli.main(["sample", str(out), "--set", "temperature=-1"]) != 0
    assert "temperature must be positive" in capsys.readouterr().err


def test_warmup_ramps_the_learning_rate_and_resumes_exactly(tmp_path, capsys):
    """4 steps an epoch, a 6-step warm-up: epoch 1 ends at lr * 4/6, epoch 2 at lr; a run stopped
    after epoch 1 and resumed matches the straight run, so the ramp's clock is in the checkpoint."""
    def train(out, epochs, *extra):
        argv = ["train", "glow", "--epochs", str(epochs), "--limit-train", "64", "--limit-eval", "16",
                "--batch-size", "16", "--lr", "0.003", "--set", "channels=4", "--set", "couplings=1",
                "--set", "warmup=6", "--no-progress", "--out", str(out), *extra]
        assert cli.main(argv) == 0, capsys.readouterr().err
        return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

    straight = train(tmp_path / "straight", 2)
    assert [r["lr"] for r in straight] == pytest.approx([0.003 * 4 / 6, 0.003])
    train(tmp_path / "resumed", 1)
    resumed = train(tmp_path / "resumed", 2, "--resume")
    assert [r["valid_nll"] for r in resumed] == [r["valid_nll"] for r in straight]
