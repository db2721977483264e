"""NADE's compiled pass (scratchgen.kernels.nade) against the engine-ops pass it replaces
(`nade_logits_reference`): logits and every gradient to rounding, serial and parallel bodies; the
op's gradients against finite differences; second order through the reference; its memory."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import threads
from scratchgen.kernels import force_impl
from scratchgen.kernels import nade as K
from scratchgen.models.nade import NADE, _nade_logits_vjp, nade_logits, nade_logits_reference
from scratchgen.tensor import Tensor

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def arrays(N, D, H, order_agnostic, dtype, seed, binary=True):
    """x, W, V, b, c, U (or None) with entries of order 1, so every term of every logit matters."""
    rng = np.random.default_rng(seed)
    x = rng.random((N, D))
    x = (x < 0.5) if binary else x
    params = [rng.normal(0, 1, s) for s in ((H, D), (D, H), (D,), (H,))]
    U = rng.normal(0, 1, (H, D)) if order_agnostic else None
    return [np.asarray(a, dtype=dtype) if a is not None else None for a in [x] + params + [U]]


def logits_and_grads(fn, data, ordering, activation, cotangent):
    """fn's logits, the gradients of <logits, cotangent> for every input (x included), and the
    logits' backward rule (the op's, or the reference's last engine op)."""
    ts = [Tensor(a.copy(), requires_grad=True) if a is not None else None for a in data]
    y = fn(*ts, ordering, activation)
    rule = y._vjp
    (y * Tensor(cotangent)).sum().backward()
    return [y.data] + [t.grad.data for t in ts if t is not None], rule


@pytest.fixture
def parallel_from(monkeypatch):
    """parallel_from(True): the prange bodies run whenever there is more than one example (two threads)."""
    def set_(parallel):
        monkeypatch.setattr(K, "PARALLEL_MIN", 0 if parallel else 1 << 62)
    return set_


@settings(max_examples=40, deadline=None)
@given(N=st.sampled_from([1, 2, 3, 5, 9]), D=st.sampled_from([1, 2, 3, 6, 11]), H=st.sampled_from([1, 2, 7, 16]),
       order_agnostic=st.booleans(), activation=st.sampled_from(["sigmoid", "relu"]),
       dtype=st.sampled_from([np.float32, np.float64]), parallel=st.booleans(), binary=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_kernel_matches_the_engine_ops_pass(N, D, H, order_agnostic, activation, dtype, parallel, binary, seed):
    data = arrays(N, D, H, order_agnostic, dtype, seed, binary)
    rng = np.random.default_rng(seed + 1)
    ordering = rng.permutation(D)
    cotangent = rng.normal(0, 1, (N, D)).astype(dtype)
    old = K.PARALLEL_MIN
    K.PARALLEL_MIN = 0 if parallel else 1 << 62
    try:
        with threads.limit(2 if parallel else 1):
            got, rule = logits_and_grads(nade_logits, data, ordering, activation, cotangent)
    finally:
        K.PARALLEL_MIN = old
    assert rule is _nade_logits_vjp                     # the compiled pass ran, not the reference
    want, _ = logits_and_grads(nade_logits_reference, data, ordering, activation, cotangent)
    names = ["logits", "x", "W", "V", "b", "c", "U"]
    for name, g, w in zip(names, got, want):
        assert g.dtype == dtype and g.shape == w.shape, name
        scale = max(1.0, float(np.abs(w).max(initial=0)))
        np.testing.assert_allclose(g, w, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=name)


def test_the_serial_and_parallel_bodies_agree_on_a_batch_of_several_blocks(parallel_from):
    data = arrays(23, 30, 12, True, np.float64, 0)
    ordering = np.random.default_rng(0).permutation(30)
    cotangent = np.random.default_rng(1).normal(0, 1, (23, 30))
    results = []
    for parallel in (False, True):
        parallel_from(parallel)
        with threads.limit(2):
            results.append(logits_and_grads(nade_logits, data, ordering, "sigmoid", cotangent)[0])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_float32_error_stays_at_rounding_along_an_mnist_long_ordering(activation):
    """D = 784 steps of the recurrence in float32: the kernel is as close to the float64 values as
    the float32 reference is (no error piles up along the ordering, forward or in reverse)."""
    N, D, H = 4, 784, 32
    d64 = arrays(N, D, H, True, np.float64, 0)
    d64[1] *= 0.1                                     # W and U of a trained model's size
    d64[5] *= 0.1
    d32 = [a.astype(np.float32) if a is not None else None for a in d64]
    ordering = np.random.default_rng(0).permutation(D)
    cotangent = np.random.default_rng(1).normal(0, 1, (N, D))
    truth, _ = logits_and_grads(nade_logits_reference, d64, ordering, activation, cotangent)
    got, _ = logits_and_grads(nade_logits, d32, ordering, activation, cotangent.astype(np.float32))
    ref, _ = logits_and_grads(nade_logits_reference, d32, ordering, activation, cotangent.astype(np.float32))
    for name, t, g, r in zip(["logits", "x", "W", "V", "b", "c", "U"], truth, got, ref):
        scale = np.abs(t).max()
        kernel_err, reference_err = np.abs(g - t).max() / scale, np.abs(r - t).max() / scale
        assert kernel_err < max(4 * reference_err, 1e-6), (name, kernel_err, reference_err)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("order_agnostic", [False, True])
def test_op_gradcheck(activation, order_agnostic):
    x, *params = arrays(3, 5, 4, order_agnostic, np.float64, 7)
    params = [p for p in params if p is not None]
    ordering = np.array([3, 0, 4, 1, 2])

    def fn(x, W, V, b, c, U=None):
        return nade_logits(x, W, V, b, c, U, ordering, activation)
    # x real-valued in (0, 1): its gradient is checked too
    assert sg.gradcheck(fn, [np.random.default_rng(0).random((3, 5))] + params)
    assert sg.gradcheck(lambda *p: fn(sg.tensor(x), *p), params)   # x a constant: only the parameters


def test_second_order_falls_back_to_the_reference_pass():
    """With create_graph the op's vjp differentiates the engine-ops pass: gradgradcheck passes,
    and a gradient penalty through the model gives the reference's values."""
    x, *params = arrays(2, 4, 3, True, np.float64, 3)
    ordering = np.array([2, 0, 3, 1])
    assert sg.gradgradcheck(lambda x, W, V, b, c, U: nade_logits(x, W, V, b, c, U, ordering, "sigmoid"),
                            [np.random.default_rng(1).random((2, 4))] + params)

    model = NADE(6, 5, ordering=np.random.default_rng(0).permutation(6), order_agnostic=True, dtype=np.float64)
    xs = np.random.default_rng(2).random((3, 6))

    def penalty_grads():
        model.zero_grad()
        x = sg.tensor(xs, requires_grad=True)
        gx, = sg.grad(model.log_prob(x).sum(), x, create_graph=True)
        ((gx ** 2).sum()).backward()
        return [p.grad.numpy().copy() for p in model.parameters()]
    got = penalty_grads()
    with force_impl("reference", "nade"):
        want = penalty_grads()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert any(np.abs(g).max() > 0 for g in got)


@pytest.mark.parametrize("order_agnostic", [False, True])
def test_model_log_prob_and_gradients_match_the_reference_in_float32(order_agnostic):
    model = NADE(40, 24, ordering=np.random.default_rng(0).permutation(40), order_agnostic=order_agnostic,
                 activation="relu" if order_agnostic else "sigmoid")
    x = (np.random.default_rng(1).random((13, 40)) < 0.3).astype(np.float32)

    def run():
        model.zero_grad()
        logp = model.log_prob(x)
        (-logp.mean()).backward()
        return [logp.detach().numpy()] + [p.grad.numpy().copy() for p in model.parameters()]
    got = run()
    with force_impl("reference", "nade"):
        want = run()
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(w).max())))


def test_dispatch_takes_the_reference_where_the_kernel_does_not_apply():
    x, W, V, b, c, _ = (Tensor(a) if a is not None else None for a in arrays(2, 3, 2, False, np.float64, 0))
    W.requires_grad_(True)
    o = np.arange(3)
    assert nade_logits(x, W, V, b, c, None, o, "relu")._vjp is _nade_logits_vjp
    with force_impl("reference", "nade"):
        assert nade_logits(x, W, V, b, c, None, o, "relu")._vjp is not _nade_logits_vjp
    mixed = nade_logits(x.astype(np.float32), W, V, b, c, None, o, "relu")     # mixed dtypes: promoted there
    assert mixed._vjp is not _nade_logits_vjp and mixed.dtype == np.float64


def test_memory_grows_with_the_batch_as_n_h_not_n_d_h(parallel_from):
    """The point of the kernel: a training step's forward and backward never hold an (N, D, H)
    array. With N D H float64 values = 16 MB, the reference's peak is several of those; the
    kernel's is its (BLOCK, D, H) scratch and the (D, H) gradients."""
    N, D, H = 128, 128, 128
    data = arrays(N, D, H, False, np.float64, 0)
    parallel_from(False)
    ordering = np.arange(D)
    cotangent = np.ones((N, D))
    peaks = {}
    for fn in (nade_logits, nade_logits_reference):
        logits_and_grads(fn, data, ordering, "sigmoid", cotangent)     # compile, warm
        tracemalloc.start()
        logits_and_grads(fn, data, ordering, "sigmoid", cotangent)
        peaks[fn] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    ndh = N * D * H * 8
    assert peaks[nade_logits] < ndh / 4 < ndh < peaks[nade_logits_reference]
