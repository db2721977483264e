"""MAF's defining properties: triangular Jacobians, exact inverse, exact log-det, a normalised density."""
import json

import numpy as np
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import cli, optim
from scratchgen.linalg import jacobian
from scratchgen.random import manual_seed
from scratchgen.models.maf import MAF, GaussianMADE


def shake(module, seed, scale=2.0):
    """Weights far from the initialisation, so that no property holds by accident."""
    rng = np.random.default_rng(seed)
    with sg.no_grad():
        for p in module.parameters():
            p.data[...] = p.data * scale + 0.1 * rng.standard_normal(p.shape)
    return module


def nontrivial_norms(model, seed):
    """Batch norms in eval mode with running statistics and affine parameters away from (0, 1)."""
    rng = np.random.default_rng(seed)
    model.eval()
    for norm in model.norms or []:
        d = norm.beta.shape[0]
        norm.running_mean.data[...] = rng.standard_normal(d)
        norm.running_var.data[...] = rng.uniform(0.3, 3.0, d)
        norm.log_gamma.data[...] = 0.3 * rng.standard_normal(d)
        norm.beta.data[...] = rng.standard_normal(d)
    return model


@settings(max_examples=15, deadline=None)
@given(D=st.integers(2, 6), hidden=st.lists(st.integers(1, 10), min_size=1, max_size=2),
       reverse=st.booleans(), seed=st.integers(0, 100))
def test_each_made_layer_has_a_triangular_jacobian_in_its_ordering(D, hidden, reverse, seed):
    made = shake(GaussianMADE(D, hidden, reverse=reverse, dtype=np.float64), seed)
    x = sg.tensor(np.random.default_rng(seed).standard_normal((1, D)))
    J = jacobian(lambda v: made.to_noise(v)[0], x).numpy().reshape(D, D)
    rank = np.empty(D, dtype=int)
    rank[made.ordering] = np.arange(D)
    after = rank[None, :] > rank[:, None]                  # J[i, j] with j after i in the ordering
    assert np.all(J[after] == 0.0)
    with sg.no_grad():
        _, alpha = made(x)
    assert np.allclose(np.diag(J), np.exp(-alpha.numpy()[0]), rtol=1e-12, atol=0)
    assert np.array_equal(made.ordering, np.arange(D)[::-1] if reverse else np.arange(D))


@settings(max_examples=15, deadline=None)
@given(D=st.integers(2, 7), blocks=st.integers(1, 4), hidden=st.lists(st.integers(2, 12), min_size=1, max_size=2),
       batch_norm=st.booleans(), seed=st.integers(0, 100))
def test_inverse_undoes_forward(D, blocks, hidden, batch_norm, seed):
    model = nontrivial_norms(shake(MAF(D, blocks, hidden, batch_norm=batch_norm, dtype=np.float64), seed, 1.0), seed)
    x = np.random.default_rng(seed + 1).standard_normal((6, D))
    with sg.no_grad():
        u, _ = model(x)
        back = model.inverse(u).numpy()
        again = model(back)[0].numpy()
    assert np.max(np.abs(back - x)) < 1e-10
    assert np.max(np.abs(again - u.numpy())) < 1e-10


@settings(max_examples=8, deadline=None)
@given(blocks=st.integers(1, 3), seed=st.integers(0, 100))
def test_log_det_equals_brute_force_on_8d(blocks, seed):
    D = 8
    model = nontrivial_norms(shake(MAF(D, blocks, [12], dtype=np.float64), seed, 1.5), seed)
    xs = np.random.default_rng(seed).standard_normal((3, D))
    with sg.no_grad():
        _, logdet = model(xs)
    for n in range(len(xs)):
        J = jacobian(lambda v: model(v)[0], sg.tensor(xs[n:n + 1])).numpy().reshape(D, D)
        sign, brute = np.linalg.slogdet(J)
        assert sign != 0
        assert abs(brute - logdet.numpy()[n]) < 1e-9 * max(1.0, abs(brute))


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_in_eval():
    model = MAF(3, 2, [8], dtype=np.float64)
    norm = model.norms[0]
    x = sg.tensor(np.random.default_rng(0).standard_normal((50, 3)) * 3 + 5)
    with sg.no_grad():
        y, logdet = norm(x)
    assert np.allclose(y.numpy().mean(0), 0, atol=1e-12) and np.allclose(y.numpy().var(0), 1, atol=1e-4)
    assert np.isclose(logdet.item(), -0.5 * np.log(x.numpy().var(0) + norm.eps).sum())
    assert np.allclose(norm.running_mean.numpy(), 0.1 * x.numpy().mean(0))   # momentum 0.1 from 0
    model.eval()
    with sg.no_grad():
        y2, _ = norm(x)
    expect = (x.numpy() - norm.running_mean.numpy()) / np.sqrt(norm.running_var.numpy() + norm.eps)
    assert np.allclose(y2.numpy(), expect)


def test_a_trained_2d_maf_lowers_its_loss_integrates_to_one_and_samples():
    manual_seed(0)   # the weights' initialisation, so the run is the same in any test order
    data = sg.data.two_moons(1024, seed=0)[0]
    model = MAF(2, 3, [32], dtype=np.float64)    # a density shaped by training, not a near-Gaussian
    opt = optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(150):
        loss = -model.log_prob(data[rng.integers(len(data), size=128)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3
    model.eval()
    lim, n = 8.0, 500
    g = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    with sg.no_grad(), np.errstate(over="ignore", invalid="ignore"):   # far corners: exp(alpha) overflows to p = 0
        p = np.exp(model.log_prob(np.stack([xx.ravel(), yy.ravel()], 1)).numpy()).reshape(n, n)
    p = np.nan_to_num(p)
    assert max(p[[0, -1]].max(), p[:, [0, -1]].max()) < 1e-4   # little mass outside the grid
    assert abs(p.sum() * (g[1] - g[0]) ** 2 - 1) < 0.01
    s = model.sample(500, generator=sg.random.Generator(0)).numpy()
    assert s.shape == (500, 2) and np.all(np.isfinite(s))
    with sg.no_grad():   # the samples sit where the density is: their mean log-density beats the data's spread
        assert model.log_prob(s).numpy().mean() > -4


def test_cli_trains_evaluates_and_samples_maf(tmp_path):
    out = tmp_path / "maf"
    argv = ["train", "maf", "--epochs", "1", "--limit-train", "64", "--limit-eval", "32", "--set", "hidden=[16]",
            "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    text = json.dumps(results)
    for key in ("test_ll", "test_ll_logit", "test_bits_per_dim"):
        assert key in text
    assert (out / "samples.png").exists()


def test_cli_trains_maf_on_a_toy_density(tmp_path):
    out = tmp_path / "toy"
    argv = ["train", "maf", "--epochs", "1", "--limit-train", "256", "--limit-eval", "64", "--set", "hidden=[16]",
            "--set", "data=two_moons", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    assert "test_ll" in (out / "results.json").read_text()
