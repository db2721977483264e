"""The DBN's defining properties, checked by enumeration on tiny networks (float64): log_prob_exact
is the marginal of the full joint, the variational bound never exceeds it and is tight when q is the
exact posterior (the complementary prior of tied weights), greedy learning of a second layer from
the tied start raises the bound; and the spec's layer schedule, resume and command line."""
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen.models.dbn import DBN


def states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def softplus(x):
    return np.logaddexp(0, x)


def random_dbn(sizes, scale, seed):
    model = DBN(sizes, init_std=scale, dtype=np.float64, generator=sg.Generator(seed))
    draw = np.random.default_rng(seed + 1)
    for r in model.rbms:
        r.b.data[:] = draw.normal(0, scale, r.visible)
        r.c.data[:] = draw.normal(0, scale, r.hidden)
    return model


def log_bernoulli(x, logits):
    return (x * logits - softplus(logits)).sum(-1)


def hidden_configs(model):
    """Every (h_1, ..., h_{L-1}): a list of tuples of 1-D arrays."""
    return list(itertools.product(*[states(n) for n in model.sizes[1:-1]]))


def log_joint_and_q(model, v, hs):
    """log p*(v, h_1..h_{L-1}) (h_L summed out, Z_L left out) and log q(h | v), for the rows v and one
    configuration hs, straight from the definitions."""
    xs = [v] + [np.broadcast_to(h, (len(v), len(h))) for h in hs]
    log_p, log_q = np.zeros(len(v)), np.zeros(len(v))
    for l, r in enumerate(list(model.rbms)[:-1]):
        W, b, c = r.W.data, r.b.data, r.c.data
        log_p += log_bernoulli(xs[l], xs[l + 1] @ W + b)
        log_q += log_bernoulli(xs[l + 1], xs[l] @ W.T + c)
    top = model.top
    log_p += xs[-1] @ top.b.data + softplus(xs[-1] @ top.W.data.T + top.c.data).sum(1)
    return log_p, log_q


def exact_bound(model, v):
    """E_q[log p*(v, h) - log q(h | v)] - log Z_L by enumeration, and the variance of log w under q."""
    rows = [log_joint_and_q(model, v, hs) for hs in hidden_configs(model)]
    log_w = np.array([p - q for p, q in rows])
    q = np.exp(np.array([q for _, q in rows]))
    mean = (q * log_w).sum(0)
    return mean - model.top.log_z_exact(), (q * (log_w - mean) ** 2).sum(0)


def brute_log_prob(model, v):
    """log p(v) summing the full joint over h_1, ..., h_L, the top RBM's energy included."""
    top = model.top
    total = np.full(len(v), -np.inf)
    for hs in hidden_configs(model):
        log_p, _ = log_joint_and_q(model, v, hs)
        h = np.broadcast_to(hs[-1], (len(v), len(hs[-1]))) if hs else v
        log_p -= h @ top.b.data + softplus(h @ top.W.data.T + top.c.data).sum(1)   # undo the free energy
        for h_top in states(top.hidden):
            total = np.logaddexp(total, log_p + h @ top.b.data + h_top @ top.c.data + h @ top.W.data.T @ h_top)
    return total - top.log_z_exact()


sizes_strategy = st.lists(st.integers(1, 3), min_size=1, max_size=3).flatmap(
    lambda hidden: st.integers(1, 4).map(lambda d: [d] + hidden))


@settings(max_examples=20, deadline=None)
@given(sizes=sizes_strategy, scale=st.floats(0.1, 2.5), seed=st.integers(0, 1000))
def test_exact_log_prob_is_the_marginal_of_the_joint_and_normalised(sizes, scale, seed):
    model = random_dbn(sizes, scale, seed)
    V = states(sizes[0])
    exact = model.log_prob_exact(V)
    np.testing.assert_allclose(exact, brute_log_prob(model, V), atol=1e-10)
    assert abs(np.exp(exact).sum() - 1) < 1e-10


@settings(max_examples=20, deadline=None)
@given(sizes=sizes_strategy, scale=st.floats(0.1, 2.5), seed=st.integers(0, 1000))
def test_lower_bound_is_below_log_p_and_estimated_without_bias(sizes, scale, seed):
    model = random_dbn(sizes, scale, seed)
    V = states(sizes[0])
    bound, var = exact_bound(model, V)
    assert np.all(bound <= model.log_prob_exact(V) + 1e-10)          # Jensen / KL(q || p) >= 0
    k = 2000
    got = model.log_prob_lower_bound(V, model.top.log_z_exact(), k=k, generator=sg.Generator(seed))
    assert got.dtype == np.float64 and got.shape == (len(V),)
    assert np.all(np.abs(got - bound) <= 5 * np.sqrt(var / k) + 1e-9)


@pytest.mark.parametrize("sizes", [[6, 4, 6], [5, 3, 5, 3], [4, 2, 4, 2, 4]])
def test_bound_is_tight_when_q_is_the_exact_posterior(sizes):
    """Each RBM the one below upside down: the DBN is RBM 1 (the complementary prior), q(h | v) is its
    exact posterior, and every single draw gives log p(v) (zero variance)."""
    model = random_dbn(sizes, 1.5, seed=7)
    for l in range(1, model.num_layers):
        model.init_from_below(l)
    V = states(sizes[0])
    with sg.no_grad():
        rbm1 = model.rbms[0].log_prob(V).numpy()
    np.testing.assert_allclose(model.log_prob_exact(V), rbm1, atol=1e-10)
    bound = model.log_prob_lower_bound(V, model.top.log_z_exact(), k=1, generator=sg.Generator(0))
    np.testing.assert_allclose(bound, rbm1, atol=1e-10)
    assert model.top.log_z_exact() == pytest.approx(model.rbms[0].log_z_exact(), abs=1e-10)


def test_an_untied_top_leaves_a_gap_of_kl_q_to_the_posterior():
    model = random_dbn([5, 3, 4], 1.5, seed=3)
    V = states(5)
    bound, _ = exact_bound(model, V)
    gap = model.log_prob_exact(V) - bound
    # the gap is KL(q(h|v) || p(h|v)): computed directly from the posterior by enumeration
    rows = [log_joint_and_q(model, V, hs) for hs in hidden_configs(model)]
    log_post = np.array([p for p, _ in rows]) - model.top.log_z_exact() - model.log_prob_exact(V)
    log_q = np.array([q for _, q in rows])
    np.testing.assert_allclose(gap, (np.exp(log_q) * (log_q - log_post)).sum(0), atol=1e-10)
    assert gap.min() > 1e-3


def test_greedy_learning_of_the_second_layer_raises_the_bound():
    """Hinton et al. (2006), Section 4: from the tied start (bound = log p under RBM 1), learning RBM 2
    by CD on draws h_1 ~ q(h_1 | v) of the data raises the data's mean bound, which stays below the
    DBN's exact log p(v)."""
    draw = np.random.default_rng(0)
    protos = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0]], dtype=np.float64)
    data = protos[draw.integers(0, 3, 300)]
    data = np.where(draw.random(data.shape) < 0.05, 1 - data, data)
    model = random_dbn([6, 4, 6], 1.0, seed=1)
    rbm1, rbm2 = model.rbms
    opt1 = sg.optim.SGD(rbm1.parameters(), lr=0.1, momentum=0.5)
    gen = sg.Generator(2)
    for _ in range(20):                  # a first layer that has learned something, not everything
        v = data[draw.integers(0, len(data), 64)]
        opt1.zero_grad()
        rbm1.cd_loss(v, rbm1.gibbs(v, 5, gen)).backward()
        opt1.step()
    model.init_from_below(1)
    with sg.no_grad():
        start = rbm1.log_prob(data).numpy().mean()
    before = exact_bound(model, data)[0].mean()
    assert before == pytest.approx(start, abs=1e-10)
    opt2 = sg.optim.SGD(rbm2.parameters(), lr=0.05, momentum=0.5)
    for _ in range(200):
        h = model.up(data, 1, sample=True, generator=gen)
        opt2.zero_grad()
        rbm2.cd_loss(h, rbm2.gibbs(h, 10, gen)).backward()
        opt2.step()
    after = exact_bound(model, data)[0].mean()
    assert after > before + 0.01                            # most of the room left by RBM 1's prior
    assert after <= model.log_prob_exact(data).mean()


def test_upward_pass_and_samples():
    model = random_dbn([5, 4, 3, 2], 1.0, seed=4)
    V = states(5)
    W1, c1, W2, c2 = model.rbms[0].W.data, model.rbms[0].c.data, model.rbms[1].W.data, model.rbms[1].c.data
    mean_field = 1 / (1 + np.exp(-(1 / (1 + np.exp(-(V @ W1.T + c1))) @ W2.T + c2)))
    np.testing.assert_allclose(model.up(V), mean_field, atol=1e-12)     # the top RBM's input
    np.testing.assert_array_equal(model.up(V, 0), V)
    drawn = model.up(np.repeat(V[[5]], 20000, 0), 1, sample=True, generator=sg.Generator(0))
    assert set(np.unique(drawn)) <= {0.0, 1.0}
    np.testing.assert_allclose(drawn.mean(0), model.up(V[[5]], 1)[0], atol=0.02)

    s = model.sample(9, steps=3, generator=sg.Generator(1))
    assert s.shape == (9, 5) and s.dtype == np.float64 and 0 <= s.numpy().min() <= s.numpy().max() <= 1
    hard = model.sample(9, steps=3, generator=sg.Generator(1), probs=False).numpy()
    assert set(np.unique(hard)) <= {0.0, 1.0}
    small = DBN([7, 3, 2], generator=sg.Generator(0))                   # float32 by default
    assert small.sample(4, steps=2, generator=sg.Generator(0)).dtype == np.float32
    assert small.up(np.zeros((2, 7))).dtype == np.float32


def test_samples_follow_the_dbn_distribution():
    """Long Gibbs chains at the top, then the top-down pass: frequencies of v match exp(log_prob_exact)."""
    model = random_dbn([3, 2, 3], 1.5, seed=5)
    v = model.sample(20000, steps=30, generator=sg.Generator(0), probs=False).numpy()
    freq = np.bincount((v @ (2.0 ** np.arange(2, -1, -1))).astype(int), minlength=8) / len(v)
    np.testing.assert_allclose(freq, np.exp(model.log_prob_exact(states(3))), atol=0.012)


def test_init_from_below_needs_matching_sizes():
    with pytest.raises(ValueError):
        DBN([6, 4, 5]).init_from_below(1)
    with pytest.raises(ValueError):
        DBN([6, 4, 6]).init_from_below(0)


# -- the spec: layer schedule, resume, command line ------------------------------------------------
def tiny_spec(monkeypatch, **config):
    from scratchgen.specs import create
    from scratchgen.specs import rbm as rbm_spec
    data = (np.random.default_rng(0).random((64, 784)) < 0.3).astype(np.float32)
    monkeypatch.setattr(rbm_spec.RBMSpec, "_split", lambda self, split, limit=None: data[:limit])
    spec = create("dbn", {"hidden": [8, 6, 4], "batch_size": 16, "epochs": 2, **config})
    return spec, data


def steps(spec, model, opt, data, n, start=0):
    out = []
    for i in range(start, start + n):
        batch = data[(16 * i) % 64:(16 * i) % 64 + 16]
        out.append(spec.training_step(model, (sg.tensor(batch),), opt))
    return out


def test_layer_schedule_splits_the_run_evenly_and_trains_one_layer_at_a_time(monkeypatch):
    spec, data = tiny_spec(monkeypatch)      # 2 epochs x 4 batches = 8 steps over 3 layers
    assert [spec.layer_at(s) for s in range(8)] == [0, 0, 0, 1, 1, 1, 2, 2]
    six, _ = tiny_spec(monkeypatch, epochs=6)   # a multiple of L: two whole epochs per layer
    assert [six.layer_at(s) for s in range(0, 24, 4)] == [0, 0, 1, 1, 2, 2]
    model = spec.build()
    opt = spec.make_optimizer(model)
    for expected in [0, 0, 0, 1, 1, 1, 2, 2]:
        before = [[p.data.copy() for p in r.parameters()] for r in model.rbms]
        assert steps(spec, model, opt, data, 1, start=spec.steps)[0]["layer"] == expected + 1
        for l, r in enumerate(model.rbms):
            changed = any(not np.array_equal(a, p.data) for a, p in zip(before[l], r.parameters()))
            assert changed == (l == expected), (l, expected)


def test_a_layer_starts_with_visible_biases_at_its_inputs_base_rate(monkeypatch):
    from scratchgen.models.rbm import base_rate_bias
    spec, data = tiny_spec(monkeypatch)
    model = spec.build()
    np.testing.assert_allclose(model.rbms[0].b.data, base_rate_bias(data), rtol=1e-6)
    assert not model.rbms[1].b.data.any()
    spec.start_layer(model, 1)
    np.testing.assert_allclose(model.rbms[1].b.data, base_rate_bias(model.up(data, 1)), rtol=1e-5)
    assert spec.layers_started == 2


def test_pcd_chains_restart_per_layer_and_resume_exactly(monkeypatch, tmp_path):
    from scratchgen import serialization
    spec, data = tiny_spec(monkeypatch, persistent=True, cd_k=2)
    model = spec.build()
    opt = spec.make_optimizer(model)
    steps(spec, model, opt, data, 2)
    assert spec.chains_layer == 0 and spec.chains.shape == (16, 784)
    steps(spec, model, opt, data, 2, start=2)   # into layer 1: chains of its 8 visible units, h_1
    assert spec.chains_layer == 1 and spec.chains.shape == (16, 8)
    path = tmp_path / "state.npz"
    serialization.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "spec": spec.training_state(model)}, path)
    straight = steps(spec, model, opt, data, 4, start=4)

    again, _ = tiny_spec(monkeypatch, persistent=True, cd_k=2)
    resumed = again.build()
    opt2 = again.make_optimizer(resumed)
    saved = serialization.load(path)
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    again.load_training_state(resumed, saved["spec"])
    assert again.steps == 4 and again.chains_layer == 1 and again.layers_started == 2
    assert steps(again, resumed, opt2, data, 4, start=4) == straight
    np.testing.assert_array_equal(again.chains, spec.chains)
    for a, b in zip(resumed.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_log_z_by_ais_is_computed_once_per_top_rbm(monkeypatch):
    from scratchgen.models.rbm import RBM
    spec, data = tiny_spec(monkeypatch, exact_bits=0, ais_runs=4, ais_betas=20)
    model = spec.build()
    calls = []
    real = RBM.ais
    monkeypatch.setattr(RBM, "ais", lambda self, **kw: calls.append(kw) or real(self, **kw))
    first = spec.log_z(model)
    assert spec.log_z(model, "valid") == first and len(calls) == 1     # the same top RBM, base and settings
    model.top.c.data[0] += 0.5
    assert spec.log_z(model)["log_z"] != first["log_z"] and len(calls) == 2
    assert np.isfinite(first["log_z_high"])


def test_train_dbn_from_the_command_line(tmp_path, capsys):
    from scratchgen import cli
    out = tmp_path / "run"
    argv = ["train", "dbn", "--epochs", "2", "--limit-train", "64", "--limit-eval", "32", "--batch-size", "16",
            "--no-progress", "--set", "hidden=[16, 12]", "--set", "ais_runs=8", "--set", "ais_betas=200",
            "--set", "exact_bits=0", "--set", "sample_steps=10", "--set", "bound_samples=2", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    for key in ("test_nll_bound", "test_nll_bound_conservative", "test_log_z", "test_log_z_high",
                "best_valid_nll_bound"):
        assert np.isfinite(results[key]), key
    assert results["test_nll_bound"] <= results["test_nll_bound_conservative"]
    assert (results["test_log_z_low"] or -np.inf) <= results["test_log_z"] <= results["test_log_z_high"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_layer"] for r in records] == [1.0, 2.0]     # 2 epochs, 2 layers: one each
    for png in ("samples.png", "filters.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
