"""The Helmholtz machine's defining properties, checked by enumeration on tiny machines (float64):
log p and log q are the Bernoulli products of the two sigmoid belief nets, the importance-sampling
estimate of log p(x) is a stochastic lower bound that tightens as k grows and is exact when q is
the posterior, the reweighted wake-sleep updates approach the exact gradients as K grows, wake-sleep
is its one-sample, sleep-only case, and both algorithms train from the command line."""
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen.models.helmholtz import HelmholtzMachine


def states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def machine(D, hidden, scale, seed):
    """A float64 machine with every parameter drawn from N(0, scale^2)."""
    model = HelmholtzMachine(D, hidden, dtype=np.float64)
    draw = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = draw.normal(0, scale, p.shape)
    return model


def all_hidden_states(model):
    """Every h = [h_1, ..., h_L] as arrays of shape (S, 1, H_l): S = 2^(sum H) states that broadcast
    against a batch of examples."""
    grid = [np.array(c) for c in zip(*itertools.product(*[states(h) for h in model.hidden_sizes]))]
    return [g[:, None, :] for g in grid]


def exact_log_likelihood(model, x):
    """log p(x) = logsumexp_h log p(x, h), by enumeration (float64 array, one per example)."""
    with sg.no_grad():
        log_joint = model.log_p(x, all_hidden_states(model)).numpy()
    return np.logaddexp.reduce(log_joint, axis=0)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def bernoulli_product(v, probs):
    return np.prod(np.where(v == 1, probs, 1 - probs), axis=-1)


def params(layer):
    return layer.weight.data, layer.bias.data


def binary_rows(n, D, seed):
    return (np.random.default_rng(seed).random((n, D)) < 0.5).astype(np.float64)


# -- the two models ----------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(D=st.integers(1, 5), hidden=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       scale=st.floats(0.1, 3.0), seed=st.integers(0, 1000))
def test_log_p_and_log_q_are_products_of_bernoullis(D, hidden, scale, seed):
    model = machine(D, hidden, scale, seed)
    x = binary_rows(4, D, seed)
    hs = [binary_rows(4, h, seed + 1 + i) for i, h in enumerate(hidden)]
    below = [x] + hs[:-1]
    p = bernoulli_product(hs[-1], sigmoid(model.prior_logits.data))          # p(h_L)
    q = np.ones(len(x))
    for layer, v, h in zip(model.generative, below, hs):                      # p(h_{l-1} | h_l)
        W, b = params(layer)
        p = p * bernoulli_product(v, sigmoid(h @ W.T + b))
    for layer, v, h in zip(model.recognition, below, hs):                     # q(h_l | h_{l-1})
        R, c = params(layer)
        q = q * bernoulli_product(h, sigmoid(v @ R.T + c))
    with sg.no_grad():
        np.testing.assert_allclose(model.log_p(x, hs).numpy(), np.log(p), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(model.log_q(hs, x).numpy(), np.log(q), rtol=1e-10, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(D=st.integers(1, 5), hidden=st.lists(st.integers(1, 3), min_size=1, max_size=2),
       scale=st.floats(0.1, 3.0), seed=st.integers(0, 1000))
def test_the_generative_model_is_normalised_and_q_too(D, hidden, scale, seed):
    model = machine(D, hidden, scale, seed)
    assert abs(np.exp(exact_log_likelihood(model, states(D))).sum() - 1) < 1e-10
    with sg.no_grad():
        q = np.exp(model.log_q(all_hidden_states(model), binary_rows(3, D, seed)).numpy())
    np.testing.assert_allclose(q.sum(axis=0), 1, atol=1e-10)


def test_ancestral_samples_follow_p_and_bottom_up_samples_follow_q():
    model = machine(4, [3, 2], 1.0, seed=3)
    codes = 2.0 ** np.arange(3, -1, -1)      # states(4) lists codes 0..15 in this order
    x, hs = model.sample_p(40000, generator=sg.Generator(0))
    freq = np.bincount((x.numpy() @ codes).astype(int), minlength=16) / len(x)
    np.testing.assert_allclose(freq, np.exp(exact_log_likelihood(model, states(4))), atol=0.01)
    assert [h.shape for h in hs] == [(40000, 3), (40000, 2)]

    x0 = np.array([[1.0, 0.0, 1.0, 1.0]])
    h1, h2 = model.sample_q(x0, k=40000, generator=sg.Generator(1))
    assert h1.shape == (40000, 1, 3) and h2.shape == (40000, 1, 2)
    drawn = np.concatenate([h1.numpy()[:, 0], h2.numpy()[:, 0]], axis=1) @ (2.0 ** np.arange(4, -1, -1))
    freq = np.bincount(drawn.astype(int), minlength=32) / 40000
    with sg.no_grad():
        q = np.exp(model.log_q(all_hidden_states(model), x0).numpy()[:, 0])   # states in the same order
    np.testing.assert_allclose(freq, q, atol=0.01)


# -- the importance-sampling estimate -----------------------------------------------------------------
def test_importance_estimate_is_a_lower_bound_in_expectation_that_tightens_as_k_grows():
    """E[log p_hat_k(x)] <= log p(x), the gap shrinking from k = 1 through 100 to 5000, averaged over
    repeated estimates (each example repeated R times) of a 5-3-2 machine."""
    model = machine(5, [3, 2], 0.5, seed=0)
    x = states(5)[[3, 17, 30]]
    exact = exact_log_likelihood(model, x)
    gaps = {}
    for k, repeats in [(1, 4000), (100, 1000), (5000, 40)]:
        est = model.importance_log_likelihood(np.repeat(x, repeats, 0), k, generator=sg.Generator(k))
        est = est.reshape(len(x), repeats)
        assert est.dtype == np.float64
        error = est.std(axis=1) / np.sqrt(repeats)
        assert np.all(est.mean(axis=1) <= exact + 3 * error + 1e-3), (k, est.mean(axis=1) - exact, error)
        gaps[k] = float(np.mean(exact - est.mean(axis=1)))
    assert gaps[1] > gaps[100] > gaps[5000], gaps
    assert gaps[1] > 0.5 and abs(gaps[5000]) < 0.03, gaps


def exact_posterior_recognition(model):
    """Set q(h | x) to the exact posterior of a D-1-1 machine (one unit per hidden layer). In a
    sigmoid belief net log p(x | h_1) is affine in x for each h_1, so the posterior's logit is too:

        logit p(h_1 = 1 | x) = logit p(h_1 = 1) + sum_d [x_d W_d - softplus(W_d + b_d) + softplus(b_d)]

    with p(h_1) the marginal sum_{h_2} p(h_2) p(h_1 | h_2); and p(h_2 | h_1, x) = p(h_2 | h_1), whose
    logit is the same expression one layer up."""
    def softplus(a):
        return np.logaddexp(0, a)
    W1, b0 = params(model.generative[0])         # p(x | h_1): W1 (D, 1)
    W2, b1 = params(model.generative[1])         # p(h_1 | h_2): W2 (1, 1)
    pi2 = sigmoid(model.prior_logits.data)
    p_h1 = pi2 * sigmoid(W2[:, 0] + b1) + (1 - pi2) * sigmoid(b1)
    R1, c1 = params(model.recognition[0])
    R1[...] = W1.T
    c1[...] = np.log(p_h1) - np.log1p(-p_h1) - (softplus(W1[:, 0] + b0) - softplus(b0)).sum()
    R2, c2 = params(model.recognition[1])
    R2[...] = W2.T
    c2[...] = model.prior_logits.data - (softplus(W2[:, 0] + b1) - softplus(b1))


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(0.1, 3.0), seed=st.integers(0, 1000), k=st.sampled_from([1, 2, 37]))
def test_with_the_exact_posterior_as_proposal_every_estimate_is_exact(scale, seed, k):
    """Then every weight p(x, h) / q(h | x) equals p(x): the estimate is exact for any k, even 1."""
    model = machine(5, [1, 1], scale, seed)
    exact_posterior_recognition(model)
    x = states(5)
    est = model.importance_log_likelihood(x, k, generator=sg.Generator(seed))
    np.testing.assert_allclose(est, exact_log_likelihood(model, x), rtol=0, atol=1e-9)


def test_the_estimate_does_not_depend_on_the_chunk_size():
    model = machine(6, [4, 3], 1.0, seed=1)
    x = binary_rows(5, 6, seed=2)
    whole = model.importance_log_likelihood(x, 50, generator=sg.Generator(4))
    for chunk in (1, 7, 50):
        np.testing.assert_array_equal(model.importance_log_likelihood(x, 50, chunk=chunk, generator=sg.Generator(4)),
                                      whole)


# -- the updates --------------------------------------------------------------------------------------
def gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return {name: None if p.grad is None else np.array(p.grad.numpy(), copy=True)
            for name, p in model.named_parameters()}


def generative_names(model):
    ids = {id(p) for p in model.generative_parameters()}
    return [name for name, p in model.named_parameters() if id(p) in ids]


def test_each_term_moves_only_its_own_model():
    """p terms touch theta only and q terms phi only, so one optimizer on their sum makes both
    models' updates: theta's gradient is the same whatever the q update, and with the sleep update
    phi's gradient is the sleep phase's alone (the same dreams, drawn after the wake samples)."""
    model = machine(5, [3, 2], 1.0, seed=4)
    x = binary_rows(4, 5, seed=0)
    theta = generative_names(model)
    phi = [n for n, _ in model.named_parameters() if n not in theta]
    assert len(theta) == 1 + 2 * 2 and len(phi) == 2 * 2
    grads = {}
    for q in ("wake", "sleep", "wake+sleep"):
        loss = model.reweighted_wake_sleep_loss(x, k=3, q_update=q, generator=sg.Generator(0))["loss"]
        grads[q] = gradients(model, loss)
    for q in ("sleep", "wake+sleep"):
        for n in theta:
            np.testing.assert_array_equal(grads[q][n], grads["wake"][n])
    g = sg.Generator(0)
    model.sample_q(x, 3, g)                                     # the wake samples come first
    sleep = gradients(model, model.sleep_loss(4, g))
    assert all(sleep[n] is None or not np.any(sleep[n]) for n in theta)
    for n in phi:
        np.testing.assert_allclose(grads["sleep"][n], sleep[n], rtol=1e-12, atol=1e-15)


def exact_gradients(model, x):
    """The exact gradients of mean log p(x) (theta) and of mean sum_h p(h|x) log q(h|x) (phi, the
    q-wake target), by enumerating h."""
    hs = all_hidden_states(model)
    log_joint = model.log_p(x, hs)
    grad_p = gradients(model, -log_joint.logsumexp(axis=0).mean())
    values = log_joint.detach().numpy()
    posterior = np.exp(values - np.logaddexp.reduce(values, axis=0))
    grad_q = gradients(model, -(sg.Tensor(posterior) * model.log_q(hs, x)).sum(axis=0).mean())
    return grad_p, grad_q


def relative_error(grads, exact, names):
    a = np.concatenate([grads[n].ravel() for n in names])
    b = np.concatenate([exact[n].ravel() for n in names])
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_rws_updates_approach_the_exact_gradients_as_k_grows():
    """p-wake: sum_k w_k grad log p(x, h_k) -> grad log p(x) = E_posterior[grad log p(x, h)];
    q-wake: sum_k w_k grad log q(h_k | x) -> E_posterior[grad log q(h | x)]."""
    model = machine(5, [3, 2], 0.5, seed=5)
    x = binary_rows(3, 5, seed=6)
    exact_p, exact_q = exact_gradients(model, x)
    theta = generative_names(model)
    phi = [n for n in exact_p if n not in theta]
    errors = {}
    for k in (2, 200000):
        terms = model.reweighted_wake_sleep_loss(x, k=k, q_update="wake", generator=sg.Generator(k))
        g = gradients(model, terms["loss"])
        errors[k] = relative_error(g, exact_p, theta), relative_error(g, exact_q, phi)
    assert max(errors[200000]) < 0.03, errors
    assert min(errors[2]) > 10 * max(errors[200000]), errors


def test_wake_sleep_is_rws_with_one_sample_and_the_sleep_update():
    """With K = 1 the weight is 1: RWS's p-wake is the wake phase, and with q_update='sleep' the
    whole update is wake-sleep's (the same draws in the same order)."""
    model = machine(5, [3, 2], 1.0, seed=7)
    x = binary_rows(4, 5, seed=8)
    ws = model.wake_sleep_loss(x, generator=sg.Generator(9))
    g_ws = gradients(model, ws["loss"])
    rws = model.reweighted_wake_sleep_loss(x, k=1, q_update="sleep", generator=sg.Generator(9))
    g_rws = gradients(model, rws["loss"])
    for name in ("loss", "wake_p", "sleep_q", "nll"):
        assert abs(float(ws[name].item()) - float(rws[name].item())) < 1e-12, name
    for name in g_ws:
        np.testing.assert_allclose(g_rws[name], g_ws[name], rtol=1e-12, atol=1e-14)


def test_q_update_choices():
    model = machine(5, [3, 2], 1.0, seed=7)
    x = binary_rows(4, 5, seed=8)
    both = model.reweighted_wake_sleep_loss(x, k=3, generator=sg.Generator(1))
    wake = model.reweighted_wake_sleep_loss(x, k=3, q_update="wake", generator=sg.Generator(1))
    assert set(both) == {"loss", "wake_p", "wake_q", "sleep_q", "nll"} and "sleep_q" not in wake
    expected = both["wake_p"] + (both["wake_q"] + both["sleep_q"]) * 0.5
    assert abs(float(both["loss"].item()) - float(expected.item())) < 1e-12
    assert abs(float(wake["loss"].item()) - float((wake["wake_p"] + wake["wake_q"]).item())) < 1e-12
    with pytest.raises(ValueError, match="q_update"):
        model.reweighted_wake_sleep_loss(x, k=3, q_update="dream")


# -- the command line ---------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["ws", "rws"])
def test_cli_trains_both_algorithms(algorithm, tmp_path):
    from scratchgen import cli
    out = tmp_path / algorithm
    argv = ["train", "helmholtz", "--epochs", "2", "--limit-train", "96", "--limit-eval", "16", "--batch-size", "32",
            "--no-progress", "--out", str(out), "--set", f"algorithm={algorithm}", "--set", "hidden=[8, 6]",
            "--set", "eval_k=20", "--set", "valid_k=5"]
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert np.isfinite(results["test_nll"]) and results["test_eval_k"] == 20
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(np.isfinite(r["valid_nll"]) and np.isfinite(r["train_nll"]) for r in records)
    assert ("train_wake_q" in records[0]) == (algorithm == "rws")
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
