"""MADE's defining properties: autoregressive structure, exact normalisation, correct sampling."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen.models.made import MADE


def rank_of(model):
    """order position of every input: rank[j] < rank[i] means j comes before i."""
    rank = np.empty(model.input_dim, dtype=int)
    rank[model.ordering] = np.arange(model.input_dim)
    return rank


@settings(max_examples=20)
@given(D=st.integers(2, 8), hidden=st.lists(st.integers(1, 12), min_size=1, max_size=3),
       natural=st.booleans(), direct=st.booleans(), k=st.integers(0, 3), seed=st.integers(0, 100))
def test_output_i_has_zero_gradient_wrt_inputs_at_or_after_i(D, hidden, natural, direct, k, seed):
    model = MADE(D, hidden, num_masks=4, natural_ordering=natural, direct_connection=direct,
                 seed=seed, dtype=np.float64)
    model.set_mask(k)
    rank = rank_of(model)
    x = sg.tensor(np.random.default_rng(seed).random((3, D)), requires_grad=True)
    logits = model(x)
    for i in range(D):
        g, = sg.grad(logits[:, i].sum(), x, retain_graph=True, allow_unused=True)
        g = np.zeros((3, D)) if g is None else g.numpy()
        later = rank >= rank[i]
        assert np.all(g[:, later] == 0.0), f"output {i} depends on inputs {np.flatnonzero(later & (g != 0).any(0))}"


def test_masks_follow_the_degree_rules():
    model = MADE(5, [7, 6], seed=3)
    m = model.degrees(0)
    hidden_mask = model.layers[1].mask.numpy()
    assert np.array_equal(hidden_mask, (m[2][:, None] >= m[1][None, :]).astype(hidden_mask.dtype))
    out_mask = model.layers[2].mask.numpy()
    assert np.array_equal(out_mask, (m[0][:, None] > m[2][None, :]).astype(out_mask.dtype))
    assert all(d.min() >= 1 and d.max() <= 4 for d in m[1:])  # hidden degrees in 1..D-1


def all_binary_vectors(D):
    return np.array(list(itertools.product([0.0, 1.0], repeat=D)))


def test_probabilities_sum_to_one_for_one_mask_and_the_ensemble():
    model = MADE(4, [16, 16], num_masks=3, natural_ordering=False, direct_connection=True, dtype=np.float64)
    for p in model.parameters():
        p.data *= 3  # make the conditionals far from uniform
    xs = sg.tensor(all_binary_vectors(4))
    with sg.no_grad():
        one = np.exp(model.log_prob(xs, num_masks=1).numpy()).sum()
        ensemble = np.exp(model.log_prob(xs).numpy()).sum()
    assert abs(one - 1) < 1e-12 and abs(ensemble - 1) < 1e-12


def test_a_partial_ensemble_uses_the_first_masks_whatever_mask_is_installed():
    model = MADE(5, [12], num_masks=4, natural_ordering=False, dtype=np.float64, seed=3)
    xs = sg.tensor(all_binary_vectors(5))
    with sg.no_grad():
        per_mask = []
        for k in range(4):
            model.set_mask(k)
            per_mask.append(model.log_prob_one_mask(xs).numpy())
        model.set_mask(2)
        two = model.log_prob(xs, num_masks=2).numpy()
        one = model.log_prob(xs, num_masks=1).numpy()
    assert np.allclose(two, np.logaddexp(per_mask[0], per_mask[1]) - np.log(2), atol=1e-12)
    assert np.allclose(one, per_mask[0], atol=1e-12)
    assert model.mask_index == 2  # put back
    with pytest.raises(ValueError, match="num_masks=5: this MADE has 4"):
        model.log_prob(xs, num_masks=5)


def test_samples_follow_the_model_distribution():
    model = MADE(3, [8], seed=1, dtype=np.float64)
    for p in model.parameters():
        p.data *= 4
    xs = all_binary_vectors(3)
    with sg.no_grad():
        probs = np.exp(model.log_prob(sg.tensor(xs)).numpy())
    samples = model.sample(20000, generator=sg.Generator(0)).numpy()
    codes = (samples @ np.array([4, 2, 1])).astype(int)
    freq = np.bincount(codes, minlength=8) / len(codes)
    expected = probs  # xs enumerates the codes 0..7 in order
    np.testing.assert_allclose(freq, expected, atol=0.015)


def test_gradient_of_log_prob_passes_gradcheck():
    model = MADE(4, [5], seed=0, dtype=np.float64)
    x = sg.tensor((np.random.default_rng(0).random((2, 4)) > 0.5).astype(np.float64))
    first = model.layers[0]

    def nll(weight):
        h = sg.nn.functional.linear(x, weight * first.mask, first.bias).relu()
        return -sg.binary_cross_entropy_with_logits(model.layers[1](h), x, reduction="sum")
    assert sg.gradcheck(nll, [first.weight.data.copy()])


@pytest.mark.parametrize("hidden,direct", [([16], True), ([12, 10], False), ([8, 8, 8], True)])
def test_incremental_sampler_draws_what_full_forward_passes_draw(hidden, direct):
    """sample() updates the first layer incrementally and computes one logit per step; the
    samples must be those of the textbook sampler (one full forward pass per dimension)."""
    model = MADE(9, hidden, natural_ordering=False, direct_connection=direct, seed=3)
    for p in model.parameters():  # away from the init, so every term matters
        p.data[...] = np.random.default_rng(1).normal(0, 1, p.data.shape)
    got = model.sample(50, generator=sg.Generator(7)).numpy()
    draw = sg.Generator(7).rng
    x = np.zeros((50, 9), dtype=np.float32)
    with sg.no_grad():
        for d in model.ordering:
            p = model(sg.tensor(x))[:, d].sigmoid().numpy()
            x[:, d] = draw.random(50) < p
    np.testing.assert_array_equal(got, x)
