"""First- and second-order gradient checks of every differentiable op, in float64, on
Hypothesis-drawn broadcastable shapes (0-d and size-1 axes included)."""
import numpy as np
from hypothesis import assume, given, strategies as st
from hypothesis.extra import numpy as hnp

import scratchgen as sg
from scratchgen.testing import arrays, broadcastable_arrays, check_gradients, gradient_test


def far_apart(x, y, gap=1e-3):
    return bool(np.all(np.abs(np.subtract(x, y)) > gap))


# -- elementwise, unary --------------------------------------------------------------
test_neg = gradient_test(sg.neg, "real")
test_exp = gradient_test(sg.exp, "real")
test_log = gradient_test(sg.log, "positive")
test_log1p = gradient_test(sg.log1p, "positive")
test_expm1 = gradient_test(sg.expm1, "real")
test_sqrt = gradient_test(sg.sqrt, "positive")
test_abs = gradient_test(sg.abs, "nonzero")
test_sin = gradient_test(sg.sin, "real")
test_cos = gradient_test(sg.cos, "real")
test_tanh = gradient_test(sg.tanh, "real")
test_sigmoid = gradient_test(sg.sigmoid, "real")
test_relu = gradient_test(sg.relu, "nonzero")
test_leaky_relu = gradient_test(lambda x: sg.leaky_relu(x, 0.2), "nonzero")
test_elu = gradient_test(lambda x: sg.elu(x, 1.5), "nonzero")
test_softplus = gradient_test(sg.softplus, "real")
test_logsigmoid = gradient_test(sg.logsigmoid, "real")
test_pow_scalar = gradient_test(lambda x: x ** 3, "real")
test_pow_fractional = gradient_test(lambda x: x ** -1.5, "positive")
test_rpow = gradient_test(lambda x: 2.0 ** x, "real")
test_clip = gradient_test(lambda x: sg.clip(x, -1.0, 1.0), "real", where=lambda x: far_apart(np.abs(x), 1.0, 1e-2))



def test_astype_sends_gradient_back_in_input_dtype():
    x = sg.tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x.astype(np.float32) * sg.tensor([3.0, 4.0])).sum().backward()
    assert x.grad.dtype == np.float64 and np.array_equal(x.grad.numpy(), [3.0, 4.0])


# -- elementwise, binary (broadcasting) ----------------------------------------------
test_add = gradient_test(sg.add, "real", "real")
test_sub = gradient_test(sg.sub, "real", "real")
test_mul = gradient_test(sg.mul, "real", "real")
test_div = gradient_test(sg.div, "real", "nonzero")
test_pow = gradient_test(sg.pow, "positive", "real")
test_maximum = gradient_test(sg.maximum, "real", "real", where=far_apart)
test_minimum = gradient_test(sg.minimum, "real", "real", where=far_apart)
test_where = gradient_test(lambda c, x, y: sg.where(c.data > 0, x, y), "nonzero", "real", "real")
test_scalar_operands = gradient_test(lambda x: (3.0 - x) / 2.0 + 1.5 * x - x / (x * x + 1), "real")


# -- reductions ----------------------------------------------------------------------
@st.composite
def array_and_axis(draw, domain="real", max_dims=3):
    x = draw(arrays(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=1, max_side=3), domain))
    axis = draw(st.none() | (st.integers(-x.ndim, x.ndim - 1) if x.ndim else st.none())
                | st.lists(st.integers(0, max(x.ndim - 1, 0)), unique=True, max_size=x.ndim).map(tuple))
    return x, axis, draw(st.booleans())


@given(array_and_axis())
def test_sum(case):
    x, axis, keepdims = case
    check_gradients(lambda t: t.sum(axis=axis, keepdims=keepdims), x)


@given(array_and_axis())
def test_mean(case):
    x, axis, keepdims = case
    check_gradients(lambda t: t.mean(axis=axis, keepdims=keepdims), x)


@given(array_and_axis())
def test_var_and_std(case):
    x, axis, keepdims = case
    assume(np.all(np.var(x, axis=axis) > 1e-2))
    check_gradients(lambda t: t.var(axis=axis, keepdims=keepdims), x)
    check_gradients(lambda t: t.std(axis=axis, keepdims=keepdims), x)


@given(array_and_axis())
def test_max_and_min(case):
    x, axis, keepdims = case
    flat = np.sort(x.ravel())
    assume(flat.size < 2 or np.min(np.diff(flat)) > 1e-3)  # no ties: the kink of max
    check_gradients(lambda t: t.max(axis=axis, keepdims=keepdims), x)
    check_gradients(lambda t: t.min(axis=axis, keepdims=keepdims), x)


@given(array_and_axis())
def test_logsumexp(case):
    x, axis, keepdims = case
    check_gradients(lambda t: t.logsumexp(axis=axis, keepdims=keepdims), x)


@given(array_and_axis(max_dims=3), st.integers(0, 2))
def test_softmax_and_log_softmax(case, axis):
    x = case[0]
    assume(x.ndim > 0)
    axis = axis % x.ndim
    check_gradients(lambda t: sg.softmax(t, axis=axis), x)
    check_gradients(lambda t: sg.log_softmax(t, axis=axis), x)


# -- matmul --------------------------------------------------------------------------
@st.composite
def matmul_operands(draw):
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=2)).input_shapes
    a_shape = draw(st.sampled_from([(k,), batch[0] + (n, k)]))
    b_shape = draw(st.sampled_from([(k,), batch[1] + (k, m)]))
    return draw(arrays(a_shape)), draw(arrays(b_shape))


@given(matmul_operands())
def test_matmul(ab):
    check_gradients(sg.matmul, *ab)


# -- shape ops -----------------------------------------------------------------------
shaped = arrays(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3))
shaped_nd = arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))


@given(shaped)
def test_reshape_flatten_squeeze_unsqueeze(x):
    check_gradients(lambda t: t.reshape(-1) * 2, x)
    check_gradients(lambda t: t.flatten(), x)
    check_gradients(lambda t: t.squeeze(), x)
    check_gradients(lambda t: t.unsqueeze(0).unsqueeze(-1), x)


@given(shaped_nd, st.randoms(use_true_random=False))
def test_transpose_permute_swapaxes(x, rnd):
    perm = list(range(x.ndim))
    rnd.shuffle(perm)
    check_gradients(lambda t: t.permute(perm), x)
    check_gradients(lambda t: t.T, x)
    check_gradients(lambda t: t.swapaxes(0, -1), x)


@given(broadcastable_arrays("real", "real"))
def test_broadcast_to(xy):
    x, y = xy
    target = np.broadcast_shapes(x.shape, y.shape)
    check_gradients(lambda t: t.broadcast_to(target), x)


@given(shaped_nd, shaped_nd, st.integers(0, 2))
def test_concatenate_and_stack(x, y, axis):
    axis = axis % x.ndim
    y = np.resize(y, x.shape[:axis] + (y.shape[0],) + x.shape[axis + 1:])
    check_gradients(lambda a, b: sg.concatenate([a, b, a], axis=axis), x, y)
    check_gradients(lambda a: sg.stack([a, a * 2], axis=axis), x)


@given(shaped_nd)
def test_split(x):
    n = x.shape[0]
    check_gradients(lambda t: sg.split(t, [n - n // 2, n // 2], axis=0), x)


@given(shaped_nd, st.integers(0, 2), st.integers(0, 2))
def test_pad_and_flip(x, before, after):
    widths = [(before, after)] + [(0, 1)] * (x.ndim - 1)
    check_gradients(lambda t: sg.pad(t, widths, value=0.5), x)
    check_gradients(lambda t: t.flip(0), x)
    check_gradients(lambda t: sg.flip(t), x)


# -- indexing ------------------------------------------------------------------------
@given(shaped_nd, st.data())
def test_getitem_basic_and_advanced(x, data):
    n = x.shape[0]
    check_gradients(lambda t: t[::-1], x)
    check_gradients(lambda t: t[n - 1], x)
    check_gradients(lambda t: t[..., :1], x)
    repeats = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5)))
    check_gradients(lambda t: t[repeats], x)  # repeated rows: scatter-add must sum
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    check_gradients(lambda t: t[mask], x)


@given(shaped_nd, st.data())
def test_take_along_axis_with_repeats(x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    shape = list(x.shape)
    shape[axis] = data.draw(st.integers(1, 4))
    idx = data.draw(hnp.arrays(np.int64, tuple(shape), elements=st.integers(0, x.shape[axis] - 1)))
    check_gradients(lambda t: sg.take_along_axis(t, idx, axis=axis), x)


# -- losses --------------------------------------------------------------------------
@given(broadcastable_arrays("real", "unit", min_dims=1))
def test_bce_with_logits(xy):
    x, y = np.broadcast_arrays(*xy)
    check_gradients(lambda a, b: sg.binary_cross_entropy_with_logits(a, b), x.copy(), y.copy())


@given(broadcastable_arrays("unit", "unit", min_dims=1))
def test_bce(py):
    p, y = np.broadcast_arrays(*py)
    check_gradients(lambda a, b: sg.binary_cross_entropy(a, b, reduction="sum"), p.copy(), y.copy())


@given(broadcastable_arrays("real", "real", min_dims=1))
def test_mse(xy):
    x, y = np.broadcast_arrays(*xy)
    check_gradients(lambda a, b: sg.mse_loss(a, b, reduction="none"), x.copy(), y.copy())


@given(st.integers(1, 4), st.integers(1, 4), st.data())
def test_cross_entropy(n, c, data):
    logits = data.draw(arrays((n, c)))
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    check_gradients(lambda z: sg.cross_entropy(z, labels), logits)


@given(broadcastable_arrays("real", "real", "positive", min_dims=1))
def test_gaussian_nll(args):
    x, y, v = (a.copy() for a in np.broadcast_arrays(*args))
    check_gradients(lambda a, b, s: sg.gaussian_nll(a, b, s, full=True), x, y, v)


# -- the rest of the element-wise math (scratchgen/ops/math.py) ---------------------------------
def _inside(lo, hi):
    return lambda *xs: all(np.all((lo < x) & (x < hi)) for x in xs)


test_tan = gradient_test(sg.tan, "real", where=lambda x: np.all(np.abs(np.cos(x)) > 0.2))
test_sinh = gradient_test(sg.sinh, "real")
test_cosh = gradient_test(sg.cosh, "real")
test_arcsin = gradient_test(sg.arcsin, "unit")
test_arccos = gradient_test(sg.arccos, "unit")
test_arctan = gradient_test(sg.arctan, "real")
test_arcsinh = gradient_test(sg.arcsinh, "real")
test_arccosh = gradient_test(lambda x: sg.arccosh(x + 1.0), "positive")
test_arctanh = gradient_test(sg.arctanh, "unit")
test_arctan2 = gradient_test(sg.arctan2, "nonzero", "positive")
test_hypot = gradient_test(sg.hypot, "nonzero", "positive")
test_square = gradient_test(sg.square, "real")
test_reciprocal = gradient_test(sg.reciprocal, "nonzero")
test_cbrt = gradient_test(sg.cbrt, "positive")
test_log2 = gradient_test(sg.log2, "positive")
test_log10 = gradient_test(sg.log10, "positive")
test_exp2 = gradient_test(sg.exp2, "real")
test_logaddexp = gradient_test(sg.logaddexp, "real", "real")
test_logaddexp2 = gradient_test(sg.logaddexp2, "real", "real")
test_logit = gradient_test(sg.logit, "unit")
test_erf = gradient_test(sg.erf, "real")
test_erfc = gradient_test(sg.erfc, "real")
test_erfinv = gradient_test(sg.erfinv, "unit")
test_lgamma = gradient_test(sg.lgamma, "positive")
test_digamma = gradient_test(sg.digamma, "positive")
test_remainder = gradient_test(lambda x, y: x % y, "real", "positive",
                               where=lambda x, y: np.all(np.abs(np.remainder(x, y)) > 1e-3)
                               and np.all(np.abs(np.remainder(x, y) - y) > 1e-3))


def test_piecewise_constant_ops_have_zero_gradient_and_numpys_values():
    x = np.array([-2.5, -0.5, 0.5, 1.5, 2.7])
    for op, ref in ((sg.floor, np.floor), (sg.ceil, np.ceil), (sg.round, np.round), (sg.trunc, np.trunc)):
        t = sg.tensor(x, requires_grad=True)
        g, = sg.grad(op(t).sum(), [t])
        np.testing.assert_array_equal(op(sg.tensor(x)).numpy(), ref(x))
        np.testing.assert_array_equal(g.numpy(), 0.0)
    np.testing.assert_array_equal((sg.tensor(x) // 0.7).numpy(), x // 0.7)
    np.testing.assert_allclose((sg.tensor(x) % -0.7).numpy(), np.remainder(x, -0.7))
