"""The array-manipulation ops of scratchgen/ops/arrays.py: NumPy's values, and first- and
second-order gradient checks in float64 on Hypothesis-drawn inputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import scratchgen as sg
from scratchgen.testing import check_gradients

mats = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4),
                  elements=st.floats(-2, 2))
vecs = hnp.arrays(np.float64, st.integers(1, 5), elements=st.floats(-2, 2))

CASES = [  # (name, scratchgen fn, NumPy fn)
    ("prod", lambda t: sg.prod(t, axis=-1), lambda a: np.prod(a, axis=-1)),
    ("prod-all", lambda t: sg.prod(t), lambda a: np.prod(a)),
    ("prod-keep", lambda t: sg.prod(t, axis=(0, -1), keepdims=True), lambda a: np.prod(a, axis=(0, -1), keepdims=True)),
    ("cumprod", lambda t: sg.cumprod(t, axis=-1), lambda a: np.cumprod(a, axis=-1)),
    ("cumsum", lambda t: sg.cumsum(t, axis=-1), lambda a: np.cumsum(a, axis=-1)),
    ("diff", lambda t: sg.diff(t, axis=-1), lambda a: np.diff(a, axis=-1)),
    ("diagonal", lambda t: sg.diagonal(t, 0, -2, -1), lambda a: np.diagonal(a, 0, -2, -1)),
    ("diagonal+1", lambda t: sg.diagonal(t, 1, -2, -1), lambda a: np.diagonal(a, 1, -2, -1)),
    ("tril", lambda t: sg.tril(t), lambda a: np.tril(a)),
    ("triu-1", lambda t: sg.triu(t, -1), lambda a: np.triu(a, -1)),
    ("roll", lambda t: sg.roll(t, 2, -1), lambda a: np.roll(a, 2, -1)),
    ("roll-flat", lambda t: sg.roll(t, 1), lambda a: np.roll(a, 1)),
    ("moveaxis", lambda t: sg.moveaxis(t, 0, -1), lambda a: np.moveaxis(a, 0, -1)),
    ("rot90", lambda t: sg.rot90(t, 1, (-2, -1)), lambda a: np.rot90(a, 1, (-2, -1))),
    ("rot90x3", lambda t: sg.rot90(t, 3, (-2, -1)), lambda a: np.rot90(a, 3, (-2, -1))),
    ("tile", lambda t: sg.tile(t, (2, 1)), lambda a: np.tile(a, (2, 1))),
    ("repeat_interleave", lambda t: sg.repeat_interleave(t, 2, axis=-1), lambda a: np.repeat(a, 2, axis=-1)),
    ("sort", lambda t: sg.sort(t, axis=-1)[0], lambda a: np.sort(a, axis=-1)),
    ("kron", lambda t: sg.kron(t, t), lambda a: np.kron(a, a)),
    ("einsum-batch", lambda t: sg.einsum(
        "bij,bkj->bik" if t.ndim == 3 else "ij,kj->ik", t, t),
     lambda a: np.einsum("bij,bkj->bik" if a.ndim == 3 else "ij,kj->ik", a, a)),
    ("einsum-sum", lambda t: sg.einsum("ij->" if t.ndim == 2 else "bij->b", t),
     lambda a: np.einsum("ij->" if a.ndim == 2 else "bij->b", a)),
    ("tensordot", lambda t: sg.tensordot(t, t, ([-1], [-1])), lambda a: np.tensordot(a, a, ([-1], [-1]))),
]


@pytest.mark.parametrize("name,ours,numpys", CASES, ids=[c[0] for c in CASES])
@settings(max_examples=15, deadline=None)
@given(x=mats)
def test_values_and_gradients(name, ours, numpys, x):
    if name == "sort" and np.any(np.diff(np.sort(x, axis=-1), axis=-1) < 1e-3):
        return  # ties: the gradient's split between equal elements is a convention
    np.testing.assert_allclose(ours(sg.tensor(x)).numpy(), numpys(x), rtol=1e-12, atol=1e-12)
    check_gradients(ours, x)


@settings(max_examples=15, deadline=None)
@given(v=vecs)
def test_vector_products_and_diag(v):
    w = v[::-1].copy()
    np.testing.assert_allclose(sg.outer(sg.tensor(v), sg.tensor(w)).numpy(), np.outer(v, w))
    assert sg.dot(sg.tensor(v), sg.tensor(w)).item() == pytest.approx(np.dot(v, w))
    np.testing.assert_allclose(sg.inner(sg.tensor(v), sg.tensor(w)).numpy(), np.inner(v, w))
    np.testing.assert_allclose(sg.diag(sg.tensor(v), 1).numpy(), np.diag(v, 1))
    np.testing.assert_allclose(sg.diag_embed(sg.tensor(v)).numpy(), np.diag(v))
    check_gradients(lambda a, b: sg.outer(a, b), v, w)
    check_gradients(lambda a: sg.diag(a, -1), v)
    check_gradients(lambda a: sg.trace(sg.diag(a)), v)


def test_clamp_with_tensor_bounds_sends_the_gradient_to_the_bound_that_binds():
    x = sg.tensor(np.array([0.0, 0.5, 2.0]), requires_grad=True)
    lo = sg.tensor(np.array([0.2, 0.2, 0.2]), requires_grad=True)
    hi = sg.tensor(np.array([1.0, 1.0, 1.0]), requires_grad=True)
    out = sg.clamp(x, lo, hi)
    gx, glo, ghi = sg.grad(out.sum(), [x, lo, hi])
    np.testing.assert_array_equal(out.detach().numpy(), [0.2, 0.5, 1.0])
    assert gx.numpy().tolist() == [0, 1, 0] and glo.numpy().tolist() == [1, 0, 0] and ghi.numpy().tolist() == [0, 0, 1]


def test_any_all_linspace_chunk_and_stacks():
    t = sg.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert bool(sg.any(t)) and not bool(sg.all(t)) and sg.any(t, axis=1).numpy().tolist() == [True, False]
    np.testing.assert_allclose(sg.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5))
    parts = sg.chunk(sg.arange(7), 3)
    assert [p.shape[0] for p in parts] == [3, 3, 1]
    assert sg.vstack([sg.ones(3), sg.zeros(3)]).shape == (2, 3)
    assert sg.hstack([sg.ones(3), sg.zeros(2)]).shape == (5,)


def test_einsum_refuses_what_it_cannot_differentiate():
    with pytest.raises(ValueError, match="explicitly"):
        sg.einsum("ij,jk", sg.ones(2, 2), sg.ones(2, 2))
    with pytest.raises(ValueError, match="repeated"):
        sg.einsum("ii->i", sg.ones(2, 2))


def test_prod_gradient_with_zeros_is_the_product_of_the_others():
    x = sg.tensor(np.array([0.0, 2.0, 3.0, 0.5]), requires_grad=True)
    g, = sg.grad(sg.prod(x), [x])
    np.testing.assert_allclose(g.numpy(), [3.0, 0.0, 0.0, 0.0])
    check_gradients(lambda t: sg.prod(t), np.array([0.0, 2.0, 3.0]))


def test_logsumexp_with_weights():
    from scipy.special import logsumexp as ref
    x, b = np.array([[0.5, 2.0, -1.0]]), np.array([[0.2, 0.0, 3.0]])
    np.testing.assert_allclose(sg.logsumexp(sg.tensor(x), axis=1, b=sg.tensor(b)).numpy(), ref(x, axis=1, b=b))
    check_gradients(lambda t: sg.logsumexp(t, axis=1, b=sg.tensor(b)), x)
    with pytest.raises(ValueError, match=">= 0"):
        sg.logsumexp(sg.tensor(x), b=sg.tensor(-b))


def test_tensor_repeat_tiles_as_in_torch():
    x = sg.tensor(np.array([[1.0, 2.0]]))
    np.testing.assert_array_equal(x.repeat(2, 2).numpy(), np.tile(x.numpy(), (2, 2)))
    np.testing.assert_array_equal(x.repeat((3, 1)).numpy(), np.tile(x.numpy(), (3, 1)))


def test_unbind_and_tensor_split_match_numpy():
    x = np.arange(14.0).reshape(7, 2)
    assert [p.numpy().tolist() for p in sg.unbind(sg.tensor(x), axis=1)] == [x[:, 0].tolist(), x[:, 1].tolist()]
    for spec in (3, [2, 5]):
        ours = [p.numpy() for p in sg.tensor_split(sg.tensor(x), spec)]
        for a, b in zip(ours, np.array_split(x, spec)):
            np.testing.assert_array_equal(a, b)
    check_gradients(lambda t: sg.unbind(t, 0)[1] * 2, x[:3])
