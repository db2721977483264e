"""NADE's defining properties: autoregressive conditionals, the O(DH) pass equal to the naive one,
exact normalisation, the order-agnostic estimator's unbiasedness, the ensemble's log-mean-exp,
correct sampling, and the command line (both variants, with a bit-exact resume)."""
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import cli
from scratchgen.linalg import jacobian
from scratchgen.models.nade import NADE


def all_binary_vectors(D):
    return np.array(list(itertools.product([0.0, 1.0], repeat=D)))


def far_from_init(model, seed=1, scale=1.5):
    """Random weights of order 1, so that every term of every conditional matters."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.normal(0, scale, p.data.shape)
    return model


def tiny(D, H, ordering=None, order_agnostic=False, activation="sigmoid", seed=0):
    return far_from_init(NADE(D, H, ordering=ordering, order_agnostic=order_agnostic, activation=activation,
                              seed=seed, dtype=np.float64), seed=seed + 1)


def naive_log_prob(model, x, ordering):
    """sum_d log p(x_{o_d} | x_{o_<d}) from D separate forward passes: h_d from the W columns
    of o_<d (and U's, for the order-agnostic model's mask of o_<d), O(D^2 H)."""
    W, V, b, c = (p.data for p in (model.W, model.V, model.b, model.c))
    act = (lambda a: 1 / (1 + np.exp(-a))) if model.activation == "sigmoid" else (lambda a: np.maximum(a, 0))
    total = np.zeros(len(x))
    for d, i in enumerate(ordering):
        seen = np.asarray(ordering[:d], dtype=int)
        a = c + x[:, seen] @ W[:, seen].T
        if model.U is not None:
            a = a + model.U.data[:, seen].sum(axis=1)
        logit = act(a) @ V[i] + b[i]
        total -= np.logaddexp(0, np.where(x[:, i] == 1, -logit, logit))   # log sigmoid(+-logit)
    return total


orderings = st.integers(2, 7).flatmap(
    lambda D: st.tuples(st.just(D), st.one_of(st.none(), st.permutations(list(range(D))))))


@settings(max_examples=15, deadline=None)
@given(Do=orderings, H=st.integers(1, 9), order_agnostic=st.booleans(),
       activation=st.sampled_from(["sigmoid", "relu"]), seed=st.integers(0, 100))
def test_logit_has_zero_jacobian_wrt_inputs_at_or_after_its_position(Do, H, order_agnostic, activation, seed):
    D, ordering = Do
    model = tiny(D, H, ordering, order_agnostic, activation, seed)
    rank = np.empty(D, dtype=int)
    rank[model.ordering] = np.arange(D)
    x = sg.tensor(np.random.default_rng(seed).random((2, D)))     # any real inputs, not only 0/1
    J = jacobian(lambda t: model(t), x).numpy()                    # (2, D, 2, D)
    for n in range(2):
        for i in range(D):
            later = rank >= rank[i]
            assert np.all(J[n, i, n, later] == 0.0), f"logit {i} depends on inputs {np.flatnonzero(later)}"
            assert np.all(np.delete(J[n, i], n, axis=0) == 0.0)    # nor on other examples
    # and it does depend on the earlier inputs (the test would pass on a constant); relu units may all be off
    if activation == "sigmoid":
        first, last = model.ordering[0], model.ordering[-1]
        assert np.any(J[:, last, :, first] != 0.0)


@settings(max_examples=15, deadline=None)
@given(Do=orderings, H=st.integers(1, 9), order_agnostic=st.booleans(),
       activation=st.sampled_from(["sigmoid", "relu"]), seed=st.integers(0, 100))
def test_log_prob_is_the_sum_of_the_naively_computed_conditionals(Do, H, order_agnostic, activation, seed):
    D, ordering = Do
    model = tiny(D, H, ordering, order_agnostic, activation, seed)
    x = (np.random.default_rng(seed).random((5, D)) < 0.5).astype(np.float64)
    with sg.no_grad():
        fast = model.log_prob(x).numpy()
    np.testing.assert_allclose(fast, naive_log_prob(model, x, model.ordering), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order_agnostic", [False, True])
def test_probabilities_sum_to_one_over_all_binary_vectors(order_agnostic):
    D = 10
    model = tiny(D, 6, np.random.default_rng(3).permutation(D), order_agnostic, seed=3)
    xs = all_binary_vectors(D)
    with sg.no_grad():
        total = np.exp(model.log_prob(xs).numpy()).sum()
        if order_agnostic:
            ensemble = np.exp(model.ensemble_log_prob(xs, 3).numpy()).sum()
            assert abs(ensemble - 1) < 1e-10
    assert abs(total - 1) < 1e-10


def test_the_order_agnostic_model_evaluates_an_ordering_with_the_masks_of_its_training():
    """The cumsum pass for ordering o must be the masked network of training, with the mask of
    o_<d at position d: the model that is trained is the model that is scored."""
    D = 6
    model = tiny(D, 5, order_agnostic=True, activation="relu", seed=4)
    o = np.random.default_rng(0).permutation(D)
    x = (np.random.default_rng(1).random((4, D)) < 0.5).astype(np.float64)
    with sg.no_grad():
        fast = model(x, o).numpy()
        for d, i in enumerate(o):
            mask = np.zeros((4, D))
            mask[:, o[:d]] = 1
            np.testing.assert_allclose(fast[:, i], model.masked_logits(x, mask).numpy()[:, i], rtol=1e-12, atol=1e-12)


def test_order_agnostic_loss_is_unbiased_for_the_nll_averaged_over_orderings():
    """Enumerate every ordering and split point of a tiny case: the mean of the estimator is
    E_o[-log p(x | o)] exactly. (For one fixed ordering, the mean over split points alone is not
    -log p(x | o): the remaining inputs stand for each other only once their order is random.)"""
    D = 4
    model = tiny(D, 5, order_agnostic=True, activation="sigmoid", seed=7)
    x = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    estimates, nlls = [], []
    with sg.no_grad():
        for o in itertools.permutations(range(D)):
            nlls.append(-model.log_prob(x, o).numpy())
            for k in range(D):     # split d = k + 1: o_1 .. o_k observed
                mask = np.zeros((2, D))
                mask[:, list(o[:k])] = 1
                estimates.append(model.order_agnostic_loss(x, mask=mask).numpy())
    np.testing.assert_allclose(np.mean(estimates, axis=0), np.mean(nlls, axis=0), rtol=1e-12)
    # and each estimate is D/(D-k) times the masked conditionals' NLL
    mask = np.array([[1.0, 0, 0, 1], [0, 0, 0, 0]])
    with sg.no_grad():
        logits = model.masked_logits(x, mask).numpy()
        got = model.order_agnostic_loss(x, mask=mask).numpy()
    nll = np.logaddexp(0, logits) - x * logits
    np.testing.assert_allclose(got, [4 / 2 * nll[0, [1, 2]].sum(), 4 / 4 * nll[1].sum()], rtol=1e-12)


def test_random_split_masks_are_uniform_subsets_of_a_uniform_size():
    model = NADE(4, 3, order_agnostic=True)
    mask, k = model.split_mask(24000, generator=sg.Generator(0))
    np.testing.assert_array_equal(mask.sum(axis=1), k)
    sizes = np.bincount(k, minlength=4) / len(k)
    np.testing.assert_allclose(sizes, 0.25, atol=0.015)       # d uniform in 1..D
    two = mask[k == 2]                                        # all 6 subsets of 2 alike
    codes = np.bincount((two @ [8, 4, 2, 1]).astype(int), minlength=16)[[3, 5, 6, 9, 10, 12]] / len(two)
    np.testing.assert_allclose(codes, 1 / 6, atol=0.02)


def test_ensemble_is_the_log_mean_exp_of_the_orderings_probabilities():
    D = 5
    model = tiny(D, 4, order_agnostic=True, seed=2)
    x = (np.random.default_rng(2).random((3, D)) < 0.5).astype(np.float64)
    with sg.no_grad():
        per = [model.log_prob(x, o).numpy() for o in model.ensemble_orderings(3)]
        got = model.ensemble_log_prob(x, 3).numpy()
    by_hand = np.log((np.exp(per[0]) + np.exp(per[1]) + np.exp(per[2])) / 3)
    np.testing.assert_allclose(got, by_hand, rtol=1e-12)
    assert not np.allclose(got, np.mean(per, axis=0))          # not an average of log-probabilities
    orderings = model.ensemble_orderings(3)
    assert len({tuple(o) for o in orderings}) == 3 and all(sorted(o) == list(range(D)) for o in orderings)
    assert all(np.array_equal(a, b) for a, b in zip(model.ensemble_orderings(2), orderings))
    with pytest.raises(ValueError, match="one ordering"):
        tiny(D, 4).ensemble_orderings(2)


@pytest.mark.parametrize("order_agnostic", [False, True])
def test_samples_follow_the_model_distribution(order_agnostic):
    D = 3
    model = tiny(D, 6, [2, 0, 1], order_agnostic, seed=5)
    xs = all_binary_vectors(D)
    with sg.no_grad():
        probs = np.exp(model.log_prob(xs).numpy())       # xs enumerates the codes 0..7 in order
    n = 20000
    samples = model.sample(n, generator=sg.Generator(0)).numpy()
    counts = np.bincount((samples @ [4, 2, 1]).astype(int), minlength=8)
    chi2 = ((counts - n * probs) ** 2 / (n * probs)).sum()
    assert chi2 < 24.3, (counts, n * probs)              # the 0.001 quantile of chi-square with 7 dof


def test_incremental_sampler_draws_what_full_forward_passes_draw():
    model = NADE(9, 7, ordering=np.random.default_rng(0).permutation(9), order_agnostic=True, activation="relu")
    far_from_init(model)
    got = model.sample(40, generator=sg.Generator(7)).numpy()
    draw = sg.Generator(7).rng
    x = np.zeros((40, 9), dtype=np.float32)
    with sg.no_grad():
        for d in model.ordering:
            p = model(sg.tensor(x))[:, d].sigmoid().numpy()
            x[:, d] = draw.random(40) < p
    np.testing.assert_array_equal(got, x)


def test_gradients_of_both_objectives_match_central_differences():
    model = tiny(4, 3, [1, 3, 0, 2], order_agnostic=True, seed=0)
    x = np.array([[1.0, 0, 1, 1], [0, 1, 1, 0]])
    mask = np.array([[1.0, 0, 0, 0], [0, 1, 1, 0]])

    def objective():
        return model.log_prob(x).sum() + model.order_agnostic_loss(x, mask=mask).sum()
    model.zero_grad()
    objective().backward()
    for p in model.parameters():
        numeric = np.zeros_like(p.data)
        for i in np.ndindex(p.shape):
            keep = p.data[i]
            with sg.no_grad():
                p.data[i] = keep + 1e-6
                up = objective().item()
                p.data[i] = keep - 1e-6
                down = objective().item()
            p.data[i] = keep
            numeric[i] = (up - down) / 2e-6
        np.testing.assert_allclose(p.grad.numpy(), numeric, rtol=1e-6, atol=1e-7)


# -- the command line ------------------------------------------------------------------------------
FLAGS = ["--limit-train", "64", "--limit-eval", "32", "--set", "hidden=16", "--no-progress"]


@pytest.fixture(autouse=True)
def bundled_data(monkeypatch):
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)


@pytest.mark.parametrize("extra", [[], ["--set", "order_agnostic=true", "--set", "test_orderings=3"]])
def test_train_nade_from_the_command_line(extra, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "nade", "--epochs", "1", "--out", str(out)] + FLAGS + extra) == 0
    results = json.loads((out / "results.json").read_text())
    assert math.isfinite(results["test_nll"]) and results["test_nll"] > 0
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    if extra:
        assert results["test_orderings"] == 3


def test_order_agnostic_resume_is_bit_exact(tmp_path, crash_while_saving):
    """The orderings and split points come from a stream saved with the checkpoint."""
    flags = FLAGS + ["--batch-size", "16", "--set", "order_agnostic=true", "--set", "test_orderings=2"]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert cli.main(["train", "nade", "--epochs", "2", "--out", str(straight)] + flags) == 0
    with crash_while_saving(2):
        assert cli.main(["train", "nade", "--epochs", "2", "--out", str(crashed)] + flags) == 130
    assert cli.main(["train", "nade", "--out", str(crashed), "--resume", "--no-progress"]) == 0

    def lines(run):
        with open(run / "metrics.jsonl") as f:
            return [{k: v for k, v in json.loads(line).items() if k not in ("time_s", "examples_per_s")}
                    for line in f]
    assert lines(straight) == lines(crashed)
