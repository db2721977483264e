"""The RBM's defining properties, checked by enumeration on tiny models (float64): the free energy
is the marginal of the energy, the Gibbs conditionals are the joint's, AIS estimates the exact
log Z within its error bar, CD-k's gradient approaches the likelihood gradient as k grows, and
persistent chains carry over and resume exactly."""
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen.models.rbm import RBM, ais_result, ais_schedule, base_rate_bias


def states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def random_rbm(D, H, scale, seed):
    model = RBM(D, H, init_std=scale, dtype=np.float64, generator=sg.Generator(seed))
    draw = np.random.default_rng(seed + 1)
    model.b.data[:] = draw.normal(0, scale, D)
    model.c.data[:] = draw.normal(0, scale, H)
    return model


def joint_log_weights(model):
    """-E(v, h) on the grid of all (v, h): shape (2^D, 2^H), and the two state lists."""
    V, Hs = states(model.visible), states(model.hidden)
    W, b, c = model.W.data, model.b.data, model.c.data
    return (V @ b)[:, None] + (Hs @ c)[None, :] + V @ W.T @ Hs.T, V, Hs


def free_energy(model, v):
    with sg.no_grad():
        return model.free_energy(v).numpy()


@settings(max_examples=25, deadline=None)
@given(D=st.integers(1, 6), H=st.integers(1, 5), scale=st.floats(0.1, 3.0), seed=st.integers(0, 1000))
def test_free_energy_is_minus_log_sum_over_h_of_exp_minus_energy(D, H, scale, seed):
    model = random_rbm(D, H, scale, seed)
    logits, V, Hs = joint_log_weights(model)
    brute = -np.logaddexp.reduce(logits, axis=1)
    np.testing.assert_allclose(free_energy(model, V), brute, rtol=1e-12, atol=1e-12)
    # and the energy itself is the one in the grid
    with sg.no_grad():
        e = model.energy(np.repeat(V, len(Hs), 0), np.tile(Hs, (len(V), 1))).numpy()
    np.testing.assert_allclose(-e.reshape(len(V), len(Hs)), logits, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(D=st.integers(1, 7), H=st.integers(1, 7), scale=st.floats(0.1, 3.0), seed=st.integers(0, 1000))
def test_exact_log_z_and_normalised_log_prob(D, H, scale, seed):
    """log_z_exact sums over the smaller layer; either way it is the whole joint's log-sum-exp."""
    model = random_rbm(D, H, scale, seed)
    logits, V, _ = joint_log_weights(model)
    log_z = np.logaddexp.reduce(logits.ravel())
    assert abs(model.log_z_exact() - log_z) < 1e-10
    with sg.no_grad():
        p = np.exp(model.log_prob(V).numpy())
    assert abs(p.sum() - 1) < 1e-10


@settings(max_examples=20, deadline=None)
@given(D=st.integers(1, 5), H=st.integers(1, 5), scale=st.floats(0.1, 3.0), seed=st.integers(0, 1000))
def test_gibbs_conditionals_are_the_joints(D, H, scale, seed):
    model = random_rbm(D, H, scale, seed)
    logits, V, Hs = joint_log_weights(model)
    joint = np.exp(logits - logits.max())
    p_h_given_v = joint / joint.sum(1, keepdims=True)        # rows: v
    p_v_given_h = joint / joint.sum(0, keepdims=True)        # columns: h
    np.testing.assert_allclose(model.hidden_probs(V), p_h_given_v @ Hs, atol=1e-12)
    np.testing.assert_allclose(model.visible_probs(Hs), (V.T @ p_v_given_h).T, atol=1e-12)


def test_gibbs_samples_follow_the_model_distribution():
    model = random_rbm(4, 3, 1.5, seed=2)
    v = model.sample(20000, steps=30, generator=sg.Generator(0)).numpy()
    freq = np.bincount((v @ (2.0 ** np.arange(3, -1, -1))).astype(int), minlength=16) / len(v)
    with sg.no_grad():
        p = np.exp(model.log_prob(states(4)).numpy())      # states(4) lists codes 0..15 in order
    np.testing.assert_allclose(freq, p, atol=0.012)


def test_ais_schedules():
    paper = ais_schedule("paper")
    assert len(paper) == 14501 and paper[0] == 0 and paper[-1] == 1
    steps = np.diff(paper)
    np.testing.assert_allclose(steps[:500], 1e-3)
    np.testing.assert_allclose(steps[500:4500], 1e-4)
    np.testing.assert_allclose(steps[4500:], 1e-5, rtol=1e-6)
    np.testing.assert_array_equal(ais_schedule(14500), paper)     # the setting's default is the paper's
    short = ais_schedule(300)
    assert len(short) == 301 and np.all(np.diff(short) > 0) and short[-1] == 1
    with pytest.raises(ValueError):
        ais_schedule([0, 0.7, 0.5, 1])


@pytest.mark.parametrize("base", ["uniform", "base_rate"])
def test_ais_log_z_agrees_with_the_exact_one_within_its_error_bar(base):
    """A 16-hidden-unit RBM with 12 visible units (exact log Z by enumerating 2^12 states)."""
    model = random_rbm(12, 16, 0.6, seed=5)
    exact = model.log_z_exact()
    bias = None
    if base == "base_rate":
        bias = base_rate_bias(model.sample(500, steps=50, generator=sg.Generator(1)).numpy())
    r = model.ais(runs=100, betas=1000, base_bias=bias, generator=sg.Generator(0))
    assert r.log_z_low <= exact <= r.log_z_high, (r.log_z_low, r.log_z, exact, r.log_z_high)
    assert r.log_z_high - r.log_z_low < 1.0       # an informative bar, not a vacuous one
    assert abs(r.log_z - exact) < 0.2
    assert r.log_weights.shape == (100,)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def annealing_model_probabilities(model, betas, base_bias):
    """p_anneal(v) of RAISE's generative model by enumeration: v_1 ~ p_0, then one block Gibbs
    step T_k at every beta_k, k = 1..K, each a (2^D x 2^D) matrix sum_h p_k(h|v) p_k(v'|h)."""
    V, Hs = states(model.visible), states(model.hidden)
    W, b, c = model.W.data, model.b.data, model.c.data
    p_v = np.prod(np.where(V == 1, _sigmoid(base_bias), 1 - _sigmoid(base_bias)), axis=1)
    for beta in betas[1:]:
        ph = _sigmoid(beta * (V @ W.T + c))                                     # (2^D, H)
        p_h = np.prod(np.where(Hs[None] == 1, ph[:, None], 1 - ph[:, None]), axis=2)   # (2^D, 2^H)
        pv = _sigmoid((1 - beta) * base_bias + beta * (b + Hs @ W))             # (2^H, D)
        p_v_given_h = np.prod(np.where(V[None] == 1, pv[:, None], 1 - pv[:, None]), axis=2)  # (2^H, 2^D)
        p_v = p_v @ (p_h @ p_v_given_h)
    return p_v, V


def test_reverse_ais_weights_are_unbiased_for_the_annealing_model_and_tighten_as_the_schedule_grows():
    """RAISE (Burda et al. 2015) on a 4 x 3 RBM: the mean of exp(log w) is p_anneal(v), computed by
    enumerating the forward chain; the log-mean is then a lower bound in expectation; with a long
    schedule p_anneal is the RBM's own p(v)."""
    model = random_rbm(4, 3, 1.0, seed=3)
    base = np.random.default_rng(0).normal(0, 0.5, 4)
    betas = np.array([0.0, 0.3, 0.7, 1.0])
    p_anneal, V = annealing_model_probabilities(model, betas, base)
    assert p_anneal.sum() == pytest.approx(1.0, abs=1e-12)
    exact = -free_energy(model, V) - model.log_z_exact()
    n = 4000
    for i in (0, 5, 11, 15):
        log_w = model.reverse_ais(np.repeat(V[i:i + 1], n, axis=0), runs=1, betas=betas, base_bias=base,
                                  generator=sg.Generator(i))
        w = np.exp(log_w)
        assert abs(w.mean() - p_anneal[i]) < 4 * w.std() / np.sqrt(n), (i, w.mean(), p_anneal[i])
        assert log_w.mean() <= np.log(p_anneal[i])                     # Jensen, with room to spare
        assert abs(p_anneal[i] - np.exp(exact[i])) > 1e-3              # a short schedule: not the RBM itself
    long = model.reverse_ais(V, runs=20, betas=2000, base_bias=base, generator=sg.Generator(7))
    np.testing.assert_allclose(long, exact, atol=0.05)
    short = model.reverse_ais(V, runs=20, betas=3, base_bias=base, generator=sg.Generator(7))
    assert np.abs(short - exact).mean() > np.abs(long - exact).mean()


def test_ais_bars_from_the_weights():
    """log(Z_hat -+ 3 sigma_hat) in float64 from the log weights; the low end -inf when vacuous."""
    w = np.array([1.0, 2.0, 3.0, 4.0])
    r = ais_result(np.log(w) + 800.0, 10.0)      # exp(800) overflows: the weights are shifted first
    se = np.std(w, ddof=1) / 2
    assert abs(r.log_z - (810 + np.log(2.5))) < 1e-12
    assert abs(r.log_z_high - (810 + np.log(2.5 + 3 * se))) < 1e-12
    assert abs(r.log_z_low - (810 + np.log(2.5 - 3 * se))) < 1e-12
    assert ais_result(np.log([1.0, 1.0, 1.0, 100.0]), 0.0).log_z_low == -np.inf


def exact_cd_gradient(model, data, k):
    """The expected CD-k gradient of a tiny RBM, the chain's law computed exactly: the data's
    empirical law times T^k, T(v -> v') = sum_h p(h|v) p(v'|h) by enumeration. k=None: the
    model's own law (the exact log-likelihood gradient)."""
    logits, V, Hs = joint_log_weights(model)
    joint = np.exp(logits - logits.max())
    p_h_given_v = joint / joint.sum(1, keepdims=True)
    p_v_given_h = joint / joint.sum(0, keepdims=True)
    T = p_h_given_v @ p_v_given_h.T
    codes = (data @ (2.0 ** np.arange(model.visible - 1, -1, -1))).astype(int)
    q = np.bincount(codes, minlength=len(V)) / len(data)
    if k is None:
        q = joint.sum(1) / joint.sum()
    else:
        q = q @ np.linalg.matrix_power(T, k)
    ph = model.hidden_probs(V)
    # dF/dW = -p(h|v) v^T, dF/db = -v, dF/dc = -p(h|v); gradient = E_data dF - E_q dF
    pd = np.bincount(codes, minlength=len(V)) / len(data)
    w = pd - q
    return [-(ph * w[:, None]).T @ V, -(w @ V), -(w @ ph)]


def cd_gradient(model, data, k, generator):
    """The implementation's CD-k gradient: autograd of cd_loss on chains from model.gibbs."""
    with sg.no_grad():
        neg = model.gibbs(data, k, generator)
    for p in model.parameters():
        p.grad = None
    model.cd_loss(sg.tensor(data), sg.tensor(neg)).backward()
    return [model.W.grad.numpy().copy(), model.b.grad.numpy().copy(), model.c.grad.numpy().copy()]


def test_cd_k_gradient_approaches_the_exact_log_likelihood_gradient_as_k_grows():
    model = random_rbm(4, 3, 2.5, seed=3)    # slow mixing: CD-1 is far off
    data = states(4)[[1, 6, 9, 14, 15]]
    exact = np.concatenate([g.ravel() for g in exact_cd_gradient(model, data, None)])
    errors = []
    for k in (1, 3, 10, 100):
        expected = np.concatenate([g.ravel() for g in exact_cd_gradient(model, data, k)])
        errors.append(np.abs(expected - exact).max())
        reps = np.repeat(data, 8000, axis=0)
        got = np.concatenate([g.ravel() for g in cd_gradient(model, reps, k, sg.Generator(k))])
        np.testing.assert_allclose(got, expected, atol=0.02)   # Monte Carlo over 40,000 chains
    assert errors[0] > 0.1                                       # CD-1 is biased for this RBM
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-6


def test_cd_loss_gradient_is_the_free_energy_difference():
    """Only the data term and the negatives' term: the negatives are constants."""
    model = random_rbm(5, 4, 1.0, seed=3)
    v = states(5)[[3, 17, 30]]
    neg = states(5)[[0, 8]]
    g = cd_gradient(model, v, 0, None)   # k=0: negatives are the data itself -> zero gradient
    assert all(np.abs(x).max() < 1e-12 for x in g)
    for p in model.parameters():
        p.grad = None
    model.cd_loss(sg.tensor(v), sg.tensor(neg)).backward()
    ph_v, ph_n = model.hidden_probs(v), model.hidden_probs(neg)
    np.testing.assert_allclose(model.W.grad.numpy(), -ph_v.T @ v / 3 + ph_n.T @ neg / 2, atol=1e-12)
    np.testing.assert_allclose(model.b.grad.numpy(), -v.mean(0) + neg.mean(0), atol=1e-12)


# -- the spec: persistent chains, resume, the command line ------------------------------------------
def tiny_spec(monkeypatch, **config):
    from scratchgen.specs import create
    from scratchgen.specs import rbm as rbm_spec
    data = (np.random.default_rng(0).random((64, 784)) < 0.3).astype(np.float32)
    monkeypatch.setattr(rbm_spec.RBMSpec, "_split", lambda self, split, limit=None: data[:limit])
    spec = create("rbm", {"hidden": 8, "batch_size": 16, "cd_k": 2, "persistent": True, **config})
    return spec, data


def steps(spec, model, opt, data, n, start=0):
    out = []
    for i in range(start, start + n):
        batch = data[(16 * i) % 64:(16 * i) % 64 + 16]
        out.append(spec.training_step(model, (sg.tensor(batch),), opt))
    return out


def test_pcd_chains_persist_across_updates(monkeypatch):
    spec, data = tiny_spec(monkeypatch)
    model = spec.build()
    opt = spec.make_optimizer(model)
    steps(spec, model, opt, data, 1)
    after_one = spec.chains.copy()
    state = spec.gibbs_rng.get_state()
    g = sg.Generator()   # the next update continues these chains with the spec's stream
    g.set_state(state)
    expected = model.gibbs(after_one, 2, g)
    steps(spec, model, opt, data, 1, start=1)
    np.testing.assert_array_equal(spec.chains, expected)
    assert spec.chains.shape == (16, 784)


def test_pcd_resumes_exactly_from_training_state(monkeypatch, tmp_path):
    from scratchgen import serialization
    spec, data = tiny_spec(monkeypatch)
    model = spec.build()
    opt = spec.make_optimizer(model)
    steps(spec, model, opt, data, 3)
    path = tmp_path / "state.npz"
    serialization.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "spec": spec.training_state(model)}, path)
    straight = steps(spec, model, opt, data, 3, start=3)

    again, _ = tiny_spec(monkeypatch)
    resumed = again.build()
    opt2 = again.make_optimizer(resumed)
    saved = serialization.load(path)
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    again.load_training_state(resumed, saved["spec"])
    assert steps(again, resumed, opt2, data, 3, start=3) == straight
    np.testing.assert_array_equal(again.chains, spec.chains)
    np.testing.assert_array_equal(resumed.W.data, model.W.data)


def test_cd_without_persistence_restarts_at_the_data(monkeypatch):
    spec, data = tiny_spec(monkeypatch, persistent=False)
    model = spec.build()
    steps(spec, model, spec.make_optimizer(model), data, 2)
    assert spec.chains is None


def test_train_rbm_from_the_command_line(tmp_path, capsys):
    from scratchgen import cli
    out = tmp_path / "run"
    argv = ["train", "rbm", "--epochs", "1", "--limit-train", "64", "--limit-eval", "32", "--no-progress",
            "--set", "hidden=16", "--set", "ais_runs=4", "--set", "ais_betas=200", "--set", "exact_hidden=0",
            "--set", "sample_steps=20", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    for key in ("test_nll_ais", "test_nll_ais_conservative", "test_log_z", "test_log_z_high", "best_valid_pseudo_nll"):
        assert np.isfinite(results[key]), key
    assert (results["test_log_z_low"] or -np.inf) <= results["test_log_z"] <= results["test_log_z_high"]
    assert results["test_nll_ais"] <= results["test_nll_ais_conservative"]
    for png in ("samples.png", "filters.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_scores_a_subset_by_reverse_ais_beside_the_exact_nll(tmp_path, capsys):
    """A 12-hidden-unit RBM (exact log Z): RAISE's NLL on the first 20 test digits is at or above
    (conservative) and near the exact NLL of the same digits."""
    from scratchgen import cli
    out = tmp_path / "run"
    assert cli.main(["train", "rbm", "--epochs", "1", "--limit-train", "300", "--limit-eval", "40", "--no-progress",
                     "--set", "hidden=12", "--set", "sample_steps=5", "--out", str(out)]) == 0, capsys.readouterr().err
    assert "test_nll_raise" not in json.loads((out / "results.json").read_text())   # off by default
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--limit-eval", "40", "--json", "--set", "raise_examples=20",
                     "--set", "raise_runs=5", "--set", "ais_betas=1000"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["raise_examples"] == 20 and m["raise_runs"] == 5
    assert m["test_nll_on_raise_examples"] - 0.05 <= m["test_nll_raise"] <= m["test_nll_on_raise_examples"] + 1.0
