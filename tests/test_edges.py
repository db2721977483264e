"""Gradients and values at the edges, where a formula meets 0 * inf: PyTorch's conventions
(zero where the function is locally constant or its limit is finite), and empty, 0-d and integer
inputs. Hypothesis draws the edge cases: constant slices, exact zeros, size-1 and empty axes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import scratchgen as sg

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, data=st.data())
def test_std_of_a_constant_slice_has_zero_gradient_and_others_are_untouched(shape, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3)))
    x[(slice(None),) * axis + (0,)] = 1.5          # slice 0 along `axis`: a constant row
    t = sg.tensor(x, requires_grad=True)
    g, = sg.grad(sg.std(t, axis=axis).sum(), [t])
    g = g.numpy()
    assert np.isfinite(g).all()
    const = np.all(x == np.take(x, [0], axis=axis), axis=axis, keepdims=True)
    np.testing.assert_array_equal(np.where(np.broadcast_to(const, x.shape), g, 0.0), 0.0)


def test_std_gradient_away_from_zero_variance_still_checks():
    x = np.array([[0.3, -1.2, 2.0], [1.1, 0.4, -0.7]])
    assert sg.gradcheck(lambda t: sg.std(t, axis=1), (sg.tensor(x, requires_grad=True),))
    assert sg.gradgradcheck(lambda t: sg.std(t, axis=1), (sg.tensor(x, requires_grad=True),))


@settings(max_examples=40, deadline=None)
@given(base=hnp.arrays(np.float64, st.integers(1, 5), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0])),
       expo=st.floats(0.0, 3.0))
def test_zero_base_gives_a_zero_exponent_gradient_never_nan(base, expo):
    b = sg.tensor(base, requires_grad=True)
    e = sg.tensor(np.full(base.shape, expo), requires_grad=True)
    gb, ge = sg.grad((b ** e).sum(), [b, e], create_graph=True)
    assert np.isfinite(ge.data).all()
    np.testing.assert_array_equal(ge.data[base == 0], 0.0)
    second = sg.grad(ge.sum(), [b, e], allow_unused=True)
    assert all(s is None or np.isfinite(s.data[base != 0]).all() for s in second)


def test_zero_exponent_gives_a_zero_base_gradient():
    b = sg.tensor([0.0, 3.0], requires_grad=True)
    gb, = sg.grad((b ** sg.tensor([0.0, 0.0])).sum(), [b])
    np.testing.assert_array_equal(gb.numpy(), [0.0, 0.0])


def test_sign_has_a_zero_gradient():
    x = sg.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    (sg.sign(x) * 5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0.0)


@pytest.mark.parametrize("shape,axis,want_shape", [((0, 3), 0, (3,)), ((2, 0), 1, (2,)), ((0,), None, ())])
def test_logsumexp_of_an_empty_axis_is_minus_infinity(shape, axis, want_shape):
    out = sg.logsumexp(sg.tensor(np.zeros(shape)), axis=axis)
    assert out.shape == want_shape and np.all(out.numpy() == -np.inf)


def test_softmax_and_log_softmax_of_a_0d_tensor():
    x = sg.tensor(3.0, requires_grad=True)
    assert sg.softmax(x).item() == 1.0 and sg.log_softmax(x).item() == 0.0
    g, = sg.grad(sg.softmax(x), [x])
    assert g.item() == 0.0


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.bool_])
def test_softmax_promotes_integer_input_to_float(dtype):
    x = np.array([1, 0, 1] if dtype == np.bool_ else [1, 2, 250], dtype=dtype)
    out = sg.softmax(sg.tensor(x)).numpy()
    assert out.dtype == np.float32
    want = np.exp(x.astype(np.float64) - x.max()) / np.exp(x.astype(np.float64) - x.max()).sum()
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)


def test_softmax_of_an_empty_tensor_is_empty():
    assert sg.softmax(sg.tensor(np.zeros((0, 4)))).shape == (0, 4)


# -- every reduction at the edges: NumPy's values, and finite gradients where the value is finite --
from scratchgen.testing import edge_arrays  # noqa: E402

REDUCTIONS = [
    ("sum", lambda t, a: sg.sum(t, axis=a), lambda x, a: np.sum(x, axis=a)),
    ("mean", lambda t, a: sg.mean(t, axis=a), lambda x, a: np.mean(x, axis=a)),
    ("var", lambda t, a: sg.var(t, axis=a), lambda x, a: np.var(x, axis=a)),
    ("std", lambda t, a: sg.std(t, axis=a), lambda x, a: np.std(x, axis=a)),
    ("logsumexp", lambda t, a: sg.logsumexp(t, axis=a), None),
    ("prod", lambda t, a: sg.prod(t, axis=a), lambda x, a: np.prod(x, axis=a)),
    ("max", lambda t, a: sg.max(t, axis=a), lambda x, a: np.max(x, axis=a)),
    ("softmax", lambda t, a: sg.softmax(t, axis=a), None),
]


@pytest.mark.parametrize("name,ours,ref", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@settings(max_examples=40, deadline=None)
@given(x=edge_arrays(min_dims=1), data=st.data())
def test_reductions_at_the_edges(name, ours, ref, x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    empty = x.shape[axis] == 0
    if empty and name in ("max", "mean", "var", "std"):
        return  # NumPy refuses or warns: nothing to compare
    if name == "softmax" and x.size == 0:
        return
    t = sg.tensor(x, requires_grad=True)
    with np.errstate(all="ignore"):
        out = ours(t, axis)
    if ref is not None:
        np.testing.assert_allclose(out.detach().numpy(), ref(x, axis), rtol=1e-10, atol=1e-12)
    if x.size and np.isfinite(out.data).all():
        g, = sg.grad(out.sum(), [t])
        assert np.isfinite(g.numpy()).all(), f"{name}: non-finite gradient at {x!r}, axis {axis}"


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
def test_integer_inputs_to_float_ops_promote_or_refuse_clearly(dtype):
    x = sg.tensor(np.array([[1, 0], [1, 1]], dtype=dtype))
    assert sg.softmax(x, axis=1).dtype.kind == "f"
    assert sg.log_softmax(x, axis=1).dtype.kind == "f"
    with pytest.raises(TypeError, match="floating"):
        sg.tensor(np.array([1, 2], dtype=dtype), requires_grad=True)


def test_bce_with_logits_in_place_path_matches_the_formula_for_every_shape():
    # The forward writes in place when the result has the logits' shape; 0-d logits and targets
    # that broadcast the logits take the plain expression. Both give softplus(x) - x*y.
    from scratchgen.losses import bce_with_logits
    rng = np.random.default_rng(0)
    for xs, ys in [((), ()), ((3,), (3,)), ((4, 3), (3,)), ((3,), (2, 3)), ((1, 3), (2, 1))]:
        x, y = rng.normal(size=xs) * 5, rng.random(ys)
        want = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
        got = bce_with_logits(sg.tensor(x), sg.tensor(y)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
