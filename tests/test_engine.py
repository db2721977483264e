"""Behaviour of the engine itself: graph lifetime, accumulation, grad modes, dtypes, errors."""
import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import scratchgen as sg


def leaf(values, dtype=np.float64):
    return sg.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


# -- graph lifetime ------------------------------------------------------------------
def test_graph_is_released_after_backward():
    x = leaf([1.0, 2.0, 3.0])
    h1 = x * 2
    h2 = h1.tanh()
    loss = (h2 * h2).sum()
    refs = [weakref.ref(t) for t in (h1, h2)]
    del h1, h2
    gc.collect()
    assert all(r() is not None for r in refs), "the graph keeps intermediates alive before backward"
    loss.backward()
    assert all(r() is None for r in refs), "intermediates must be freed once backward is done"


def test_second_backward_through_freed_graph_raises_clearly():
    x = leaf([1.0, 2.0])
    y = (x.exp() * 3).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward_and_grads_accumulate():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * np.array([1.0, 2.0]))


def test_gradients_accumulate_across_two_backward_calls():
    x = leaf([1.0, -2.0])
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 + 2 * np.array([1.0, -2.0]))


def test_backward_does_not_mutate_its_inputs():
    a = np.array([[0.5, -1.0], [2.0, 0.1]])
    b = np.array([0.3, -0.7])
    x, y = leaf(a), leaf(b)
    out = ((x @ y).sigmoid() * x.sum(axis=0)).logsumexp()
    seed = sg.tensor(np.array(1.0))
    out.backward(seed)
    np.testing.assert_array_equal(x.numpy() if not x.requires_grad else x.data, a)
    np.testing.assert_array_equal(y.data, b)
    np.testing.assert_array_equal(seed.numpy(), 1.0)


def test_shared_subexpression_gradient_sums_both_paths():
    x = leaf(3.0)
    y = x * x
    (y + y * y).backward()  # d/dx (x^2 + x^4) = 2x + 4x^3
    assert x.grad.item() == pytest.approx(2 * 3 + 4 * 27)


def test_memory_stays_flat_over_10000_steps():
    rng = np.random.default_rng(0)
    w = sg.tensor(rng.standard_normal((8, 4)).astype(np.float32), requires_grad=True)
    x = sg.tensor(rng.standard_normal((16, 8)).astype(np.float32))

    def step():
        loss = (x @ w).tanh().pow(2).mean()
        loss.backward()
        with sg.no_grad():
            w.data -= 0.01 * w.grad.data
        w.grad = None

    tracemalloc.start()
    for _ in range(500):
        step()
    gc.collect()  # also trims interpreter free-lists, so both readings see live objects only
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(10_000):
        step()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 10_000, f"memory grew by {after - before} bytes over 10,000 steps"


# -- sg.grad and higher order --------------------------------------------------------
def test_grad_returns_tuple_and_does_not_accumulate():
    x, y = leaf(2.0), leaf(5.0)
    gx, gy = sg.grad(x * y, [x, y])
    assert (gx.item(), gy.item()) == (5.0, 2.0)
    assert x.grad is None and y.grad is None


def test_third_order_gradient():
    x = leaf(0.7)
    y = x.sin() * x ** 3
    g1, = sg.grad(y, x, create_graph=True)
    g2, = sg.grad(g1, x, create_graph=True)
    g3, = sg.grad(g2, x)
    v = 0.7
    # d^3/dx^3 [x^3 sin x] = 6 sin x + 18 x cos x - 9 x^2 sin x - x^3 cos x
    expected = 6 * np.sin(v) + 18 * v * np.cos(v) - 9 * v**2 * np.sin(v) - v**3 * np.cos(v)
    assert g3.item() == pytest.approx(expected, rel=1e-10)


def test_hessian_vector_product():
    a = np.array([[3.0, 1.0], [1.0, 2.0]])
    x = leaf([0.5, -1.0])
    v = sg.tensor(np.array([1.0, 2.0]))
    f = 0.5 * (x @ sg.tensor(a) @ x)
    g, = sg.grad(f, x, create_graph=True)
    hv, = sg.grad((g * v).sum(), x)
    np.testing.assert_allclose(hv.numpy(), a @ v.numpy())


def _penalty(x, w):
    x = x.detach().requires_grad_()
    gx, = sg.grad((x @ w).tanh().sum(), x, create_graph=True)
    return ((gx * gx).sum().sqrt() - 1) ** 2


def test_gradient_penalty_gradient_reaches_weights_and_matches_finite_differences():
    w = leaf([[0.5, -0.3], [0.2, 0.8]])
    x = sg.tensor(np.array([[1.0, 2.0]]))
    _penalty(x, w).backward()
    assert w.grad is not None and np.all(np.isfinite(w.grad.numpy()))
    assert sg.gradcheck(lambda w_: _penalty(x, w_), [w.data])


def test_grad_allow_unused():
    x, y = leaf(1.0), leaf(2.0)
    with pytest.raises(RuntimeError, match="allow_unused"):
        sg.grad(x * 2, [x, y])
    gx, gy = sg.grad(x * 2, [x, y], allow_unused=True)
    assert gx.item() == 2.0 and gy is None


def test_grad_wrt_intermediate_tensor():
    x = leaf(2.0)
    h = x * x
    y = h * 3
    gh, = sg.grad(y, h)
    assert gh.item() == 3.0


# -- grad modes ----------------------------------------------------------------------
def test_no_grad_builds_no_graph_as_context_and_decorator():
    x = leaf([1.0, 2.0])
    with sg.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None and y._inputs == ()

    @sg.no_grad()
    def f(t):
        return t.exp()
    z = f(x)
    assert not z.requires_grad and z.grad_fn is None
    assert sg.is_grad_enabled()


def test_enable_grad_undoes_no_grad():
    x = leaf(1.0)
    with sg.no_grad():
        with sg.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad


# -- dtypes --------------------------------------------------------------------------
def test_dtype_policy():
    assert sg.tensor([1.0, 2.0]).dtype == np.float32
    assert sg.tensor(np.array([1.0])).dtype == np.float64
    assert sg.tensor([1, 2]).dtype == np.int64
    assert sg.zeros(2).dtype == np.float32 and sg.randn(2).dtype == np.float32
    f32, f64 = sg.tensor([1.0]), sg.tensor(np.array([1.0]))
    assert (f32 * 2.5).dtype == np.float32          # Python numbers take the tensor's dtype
    assert (f32 + f64).dtype == np.float64          # NumPy promotion between floats
    assert (sg.tensor([1, 2]) * f32).dtype == np.float32  # integers take the float's dtype
    assert (sg.tensor([1, 2]) * 0.5).dtype == np.float32


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        sg.tensor([1, 2], requires_grad=True)


def test_comparisons_give_boolean_tensors_outside_the_graph():
    x = leaf([1.0, -1.0])
    m = x > 0
    assert m.dtype == np.bool_ and not m.requires_grad
    assert (x == x).numpy().all()


# -- errors --------------------------------------------------------------------------
def test_broadcast_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
        sg.ones(2, 3) + sg.ones(4)


def test_matmul_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        sg.ones(2, 3) @ sg.ones(4, 5)


def test_backward_on_non_scalar_says_what_to_pass():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="gradient="):
        (x * 2).backward()
    (x * 2).backward(sg.ones_like(x))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_backward_without_graph_is_a_clear_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        sg.tensor(1.0).backward()


# -- tensors -------------------------------------------------------------------------
def test_attributes_and_conversions():
    x = sg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert x.shape == (2, 2) and x.ndim == 2 and x.size == 4 and x.is_leaf
    y = x * 2
    assert not y.is_leaf and "grad_fn=<mul_vjp>" in repr(y)
    assert "requires_grad=True" in repr(x)
    assert y.detach().requires_grad is False
    assert x.double().dtype == np.float64 and x.double().float().dtype == np.float32
    assert y.sum().item() == 20.0
    with pytest.raises(RuntimeError, match="detach"):
        y.numpy()


def test_constructors_and_seeding():
    assert sg.eye(3).numpy().trace() == 3 and sg.arange(5).numpy().tolist() == [0, 1, 2, 3, 4]
    assert sg.full((2, 2), 7.0).numpy().sum() == 28 and sg.ones_like(sg.zeros(3)).numpy().sum() == 3
    sg.manual_seed(123)
    a = sg.randn(5).numpy()
    sg.manual_seed(123)
    assert np.array_equal(a, sg.randn(5).numpy())
    g1, g2 = sg.Generator(7), sg.Generator(7)
    assert np.array_equal(sg.rand(4, generator=g1).numpy(), sg.rand(4, generator=g2).numpy())
    state = g1.get_state()
    first = sg.rand(3, generator=g1).numpy()
    g1.set_state(state)
    assert np.array_equal(first, sg.rand(3, generator=g1).numpy())


def test_each_leaf_gets_its_own_writeable_gradient_array():
    a, b = leaf([1.0, 2.0, 3.0]), leaf([1.0, 1.0, 1.0])
    (a + b).sum().backward()  # add's rule hands the same (broadcast) array to both inputs
    assert a.grad.data is not b.grad.data
    a.grad.data *= 2  # in-place gradient edits (clipping, weight decay) must be safe
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0, 1.0])


def test_detect_anomaly_names_the_forward_op_and_the_users_line():
    x = sg.tensor([1.0, -1.0], requires_grad=True)
    with sg.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"log made NaN .*test_engine.py"):
            (x - 2.0).log()
    (x - 2.0).log()  # off again: NumPy's NaN, no error


def test_detect_anomaly_names_the_backward_rule_that_went_non_finite():
    x = sg.tensor([0.0, 4.0], requires_grad=True)
    with sg.detect_anomaly():
        y = x.sqrt().sum()          # finite forward; d sqrt / dx = inf at 0
        with pytest.raises(FloatingPointError, match=r"backward of sqrt .*input 0.*test_engine.py"):
            y.backward()


@pytest.mark.parametrize("op", [sg.maximum, sg.minimum])
def test_maximum_and_minimum_propagate_nan_like_numpy(op):
    a = np.array([np.nan, 1.0, 2.0, np.nan])
    b = np.array([0.0, np.nan, 1.0, np.nan])
    want = (np.maximum if op is sg.maximum else np.minimum)(a, b)
    np.testing.assert_array_equal(op(sg.tensor(a), sg.tensor(b)).numpy(), want)


def test_elu_and_bce_never_hide_nan():
    assert np.isnan(sg.elu(sg.tensor([np.nan])).numpy()).all()
    loss = sg.binary_cross_entropy(sg.tensor([np.nan, 0.5]), sg.tensor([1.0, 0.0]), reduction="none")
    assert np.isnan(loss.numpy()[0]) and np.isfinite(loss.numpy()[1])


@pytest.mark.parametrize("probs,target", [([1.5], [1.0]), ([-0.1], [0.0]), ([0.5], [2.0])])
def test_bce_on_probabilities_outside_the_unit_interval_is_an_error(probs, target):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        sg.binary_cross_entropy(sg.tensor(probs), sg.tensor(target))


def test_backward_after_an_optimizer_step_on_a_saved_parameter_raises():
    """The version counter: the rule of w @ x saved w; stepping w before backward makes the saved
    values stale, which PyTorch refuses and so do we (a GAN's classic bug)."""
    from scratchgen import optim
    w = sg.tensor(np.ones((2, 2)), requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    loss = (w * 3.0).sum()
    (w * 2.0).sum().backward()
    opt.step()
    with pytest.raises(RuntimeError, match="modified in place.*optimizer.step"):
        loss.backward()
    opt.zero_grad()
    (w * 3.0).sum().backward()  # recomputed after the step: fine
    np.testing.assert_array_equal(w.grad.numpy(), np.full((2, 2), 3.0))


def test_in_place_writes_follow_torchs_rules_and_bump_the_version():
    w = sg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="only under sg.no_grad"):
        w.mul_(2.0)
    loss = (w * w).sum()
    with sg.no_grad():
        w.mul_(0.5).add_(1.0)
    np.testing.assert_array_equal(w.data, [1.5, 2.0])
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()  # the graph saved w before the write: its gradient would be stale
    made = w * 2
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        with sg.no_grad():
            made.zero_()
    with sg.no_grad():
        w.copy_(sg.tensor([3.0, 4.0])).fill_(0.0)
    assert w.data.tolist() == [0.0, 0.0]


def test_setitem_inside_the_graph_sends_gradients_to_the_value_and_the_rest():
    from scratchgen.testing import check_gradients

    def fn(x, v):
        y = x * 1.0
        y[1:3] = v * 2.0
        y[0] = y[3] ** 2        # reads the written tensor: the new node's gradient flows through
        return y

    check_gradients(fn, np.array([0.5, -1.0, 2.0, 3.0]), np.array([1.5, -0.5]))
    y = sg.zeros(3)
    v = sg.tensor(np.array(2.0), requires_grad=True)
    y[1] = v * 3
    y.sum().backward()
    assert v.grad.item() == 3.0


def test_setitem_rules_leaves_and_stale_graphs():
    w = sg.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w[0] = 5.0
    with sg.no_grad():
        w[0] = 5.0                      # allowed, as in PyTorch, and versioned
    y = w * 1.0
    z = (y * y).sum()                   # mul saved y
    y[1] = 0.0
    with pytest.raises(RuntimeError, match="modified in place"):
        z.backward()
