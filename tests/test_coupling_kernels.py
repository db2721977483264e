"""Fused affine coupling: kernels (scratchgen.kernels.coupling) and the op (scratchgen.ops.coupling).

Tolerances are relative to the size of the terms, not of the result: y2 = x2 e^s + t may cancel,
so the bound is rtol * (|x2 e^s| + |t|); a row sum is compared with rtol * sum|s| (NumPy sums
pairwise, the kernels with vector partial sums or a tree: same accuracy, not the same bits).
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import scratchgen as sg
from scratchgen import threads as thread_policy
from scratchgen.kernels import coupling as K, coupling_numba, force_impl
from scratchgen.kernels.dispatch import select
from scratchgen.ops.coupling import affine_coupling, affine_coupling_inverse

RTOL = {np.float32: 1e-6, np.float64: 1e-12}
ROUNDTRIP = {np.float32: 1e-5, np.float64: 1e-10}
DTYPES = [np.float32, np.float64]


def assert_close(actual, expected, scale, rtol):
    """|actual - expected| <= rtol * scale elementwise (plus a few subnormal steps, the absolute
    rounding error of a subnormal result), with inf/nan required at the same places."""
    floor = 4 * float(np.finfo(np.asarray(actual).dtype).smallest_subnormal)
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    fin = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(actual), fin)
    np.testing.assert_array_equal(actual[~fin], expected[~fin])  # same infs (nan == nan here)
    err = np.abs(actual[fin] - expected[fin])
    bound = rtol * np.asarray(np.broadcast_to(scale, expected.shape), np.float64)[fin] + floor
    bad = err > bound
    assert not bad.any(), f"max error {err.max():.3g}, bound there {bound[np.argmax(err - bound)]:.3g}"


@st.composite
def coupling_arrays(draw, dtypes=tuple(DTYPES), max_n=7, max_d=9, s_range=5.0, count=4, real_range=10.0):
    """(dtype, [s, x, t, ...], gl): s in [-s_range, s_range], the others in [-real_range, real_range]."""
    dtype = draw(st.sampled_from(dtypes))
    shape = (draw(st.integers(1, max_n)), draw(st.integers(1, max_d)))
    real = st.floats(-real_range, real_range, width=32)
    xs = [draw(hnp.arrays(dtype, shape, elements=st.floats(-s_range, s_range, width=32)))]  # s
    xs += [draw(hnp.arrays(dtype, shape, elements=real)) for _ in range(count - 1)]
    gl = draw(hnp.arrays(dtype, shape[:1], elements=real))
    return dtype, xs, gl


def check_against_reference(impl, dtype, s, x, t, g, gl):
    """Every operation of `impl` against the reference, with and without the optional inputs."""
    rtol = RTOL[dtype]
    e = np.exp(s.astype(np.float64))
    y, ld, es = K.affine_forward(x, s, t, save_exp=True, impl=impl)
    yr, ldr, _ = K.affine_forward(x, s, t, save_exp=True, impl="reference")
    assert y.dtype == ld.dtype == es.dtype == dtype
    assert_close(y, yr, np.abs(x * e) + np.abs(t), rtol)
    assert_close(ld, ldr, np.abs(s).sum(1), rtol)
    assert_close(es, e, e, rtol)

    xi, nld, ens = K.affine_inverse(y, s, t, save_exp=True, impl=impl)
    xir, nldr = K.affine_inverse(y, s, t, impl="reference")
    assert_close(xi, xir, (np.abs(y) + np.abs(t)) / e, rtol)
    assert_close(nld, nldr, np.abs(s).sum(1), rtol)
    assert_close(ens, 1 / e, 1 / e, rtol)

    for gl_, exp_s in ((gl, None), (None, None), (gl, es)):
        gx, gs, gt = K.affine_forward_backward(x, s, g, gl_, exp_s=exp_s, impl=impl)
        gxr, gsr, gtr = K.affine_forward_backward(x, s, g, gl_, impl="reference")
        lterm = 0 if gl_ is None else np.abs(gl_)[:, None]
        assert_close(gx, gxr, np.abs(g * e), rtol)
        assert_close(gs, gsr, np.abs(g * x * e) + lterm, rtol)
        np.testing.assert_array_equal(gt, g)
    gx, gs2, _ = K.affine_forward_backward(x, s, g, gl, need_gx2=False, impl=impl)
    assert gx is None
    assert_close(gs2, gsr, np.abs(g * x * e) + np.abs(gl)[:, None], rtol)

    for gl_, exp_neg_s in ((gl, None), (None, ens)):
        out = K.affine_inverse_backward(y, s, t, g, gl_, exp_neg_s=exp_neg_s, impl=impl)
        ref = K.affine_inverse_backward(y, s, t, g, gl_, impl="reference")
        lterm = 0 if gl_ is None else np.abs(gl_)[:, None]
        assert_close(out[0], ref[0], np.abs(g) / e, rtol)
        assert_close(out[1], ref[1], np.abs(g) * (np.abs(y) + np.abs(t)) / e + lterm, rtol)
        assert_close(out[2], ref[2], np.abs(g) / e, rtol)


# -- Numba CPU vs the reference ------------------------------------------------------
@given(coupling_arrays(count=4))
def test_numba_matches_reference(case):
    dtype, (s, x, t, g), gl = case
    check_against_reference("numba", dtype, s, x, t, g, gl)


@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_parallel_variant_matches_reference(dtype):
    rng = np.random.default_rng(1)
    n, d = 64, coupling_numba.PARALLEL_MIN // 64 + 3  # above PARALLEL_MIN: the prange kernels run
    s, x, t, g = (rng.standard_normal((n, d)).astype(dtype) for _ in range(4))
    with thread_policy.limit(2):                       # (parallel_pays needs two threads)
        check_against_reference("numba", dtype, s, x, t, g, rng.standard_normal(n).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_accepts_strided_views(dtype):
    rng = np.random.default_rng(2)
    wide = rng.standard_normal((6, 20)).astype(dtype)
    x2, s, t = wide[:, 10:], wide[:, :10] * 0.5, wide[::-1, 5:15]  # RealNVP-style halves
    y, ld = K.affine_forward(x2, s, t)
    yr, ldr = K.affine_forward(x2, s, t, impl="reference")
    assert_close(y, yr, np.abs(yr) + np.abs(t), RTOL[dtype])
    assert_close(ld, ldr, np.abs(s).sum(1), RTOL[dtype])


@pytest.mark.parametrize("impl", ["reference", "numba"])
@pytest.mark.parametrize("shape", [(0, 5), (4, 0), (0, 0)])
def test_empty_arrays(impl, shape):
    z = np.zeros(shape, np.float32)
    y, ld = K.affine_forward(z, z, z, impl=impl)
    assert y.shape == shape and ld.shape == shape[:1] and (ld == 0).all()
    gx, gs, gt = K.affine_forward_backward(z, z, z, np.zeros(shape[0], np.float32), impl=impl)
    assert gx.shape == gs.shape == shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_exp_is_within_one_ulp_and_saturates_like_numpy(dtype):
    """y2 = 1 * e^s + 0 is e^s exactly, so the forward exposes the CPU kernels' own exp."""
    info = np.finfo(dtype)
    lo, hi = (-110.0, 95.0) if dtype == np.float32 else (-760.0, 720.0)
    s = np.concatenate([np.linspace(lo, hi, 200_001), np.random.default_rng(3).uniform(-3, 3, 50_000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, np.log(info.max), np.log(info.tiny)]])
    s = s.astype(dtype)[None, :]
    y, _ = K.affine_forward(np.ones_like(s), s, np.zeros_like(s), impl="numba")
    with np.errstate(over="ignore", under="ignore"):
        expected = np.exp(s)
        exact = np.exp(s.astype(np.longdouble))
    # inf, 0 and nan exactly where NumPy has them; subnormals within one subnormal step
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
    np.testing.assert_array_equal(y == 0, expected == 0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    normal = np.isfinite(exact) & (exact >= info.tiny) & (exact <= info.max)
    ulp = np.abs(y[normal].astype(np.longdouble) - exact[normal]) / np.spacing(exact[normal].astype(dtype))
    assert ulp.max() <= 1.0, f"max error {float(ulp.max()):.3f} ulp"
    sub = np.isfinite(y) & ~normal & np.isfinite(s)
    assert np.abs(y[sub].astype(np.longdouble) - exact[sub]).max() <= info.smallest_subnormal


EXTREME_S = [1000.0, -1000.0, 88.8, -104.0, 720.0, -760.0, np.inf, -np.inf, np.nan, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_s_gives_the_same_inf_zero_nan_as_numpy(dtype):
    """Documented behaviour: exp saturates to inf / 0 like NumPy's; then IEEE rules apply:
    x2 * inf = +-inf (nan where x2 == 0), x2 * 0 + t = t, and nan in s gives nan (logdet too)."""
    s = np.array(EXTREME_S, dtype)
    s, x = np.repeat(s, 3)[None, :], np.tile(np.array([0.0, 2.0, -3.0], dtype), len(EXTREME_S))[None, :]
    t = np.full_like(s, 0.5)
    g, gl = np.ones_like(s), np.ones(1, dtype)
    with np.errstate(all="ignore"):
        for out, ref in ((K.affine_forward(x, s, t, impl="numba"), K.affine_forward(x, s, t, impl="reference")),
                         (K.affine_inverse(x, s, t, impl="numba"), K.affine_inverse(x, s, t, impl="reference")),
                         (K.affine_forward_backward(x, s, g, gl, impl="numba"),
                          K.affine_forward_backward(x, s, g, gl, impl="reference")),
                         (K.affine_inverse_backward(x, s, t, g, gl, impl="numba"),
                          K.affine_inverse_backward(x, s, t, g, gl, impl="reference"))):
            for a, b in zip(out, ref):
                np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
                np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b))
                np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b))
                np.testing.assert_array_equal(a == 0, b == 0)
    y, ld = K.affine_forward(x, s, t)
    assert np.isnan(ld).all()  # the row holds a nan (and +-inf, which would give nan anyway)
    finite = np.isfinite(s[0])
    y, ld = K.affine_forward(x[:, finite], s[:, finite], t[:, finite])
    assert np.isfinite(ld).all()


def test_dispatch_and_errors():
    a32 = np.zeros((2, 3), np.float32)
    assert select(K.FAMILY, None, (a32,)) == "numba"
    assert select(K.FAMILY, None, (a32.astype(np.float16),)) == "reference"
    y, ld = K.affine_forward(*(np.ones((2, 3), np.float16),) * 3)  # reference path
    assert y.dtype == np.float16 and np.allclose(y, np.e + 1, rtol=1e-3)
    with pytest.raises(ValueError, match="impl"):
        K.affine_forward(a32, a32, a32, impl="fortran")
    with pytest.raises(TypeError, match="numba"):
        K.affine_forward(*(a32.astype(np.float16),) * 3, impl="numba")
    with pytest.raises(TypeError, match="dtype"):
        K.affine_forward(a32, a32.astype(np.float64), a32)
    with pytest.raises(ValueError, match="shape"):
        K.affine_forward(a32, np.zeros((2, 4), np.float32), a32)
    with pytest.raises(ValueError, match="2-D"):
        K.affine_forward(a32[0], a32[0], a32[0])
    with pytest.raises(ValueError, match="gl"):
        K.affine_forward_backward(a32, a32, a32, np.zeros(3, np.float32))
    with force_impl("reference"):
        assert select(K.FAMILY, "numba", (a32,)) == "reference"
        y, ld = K.affine_forward(a32, a32, a32, impl="numba")       # the forced one runs
    with force_impl("gemm"):                                       # not a coupling implementation
        assert select(K.FAMILY, "numba", (a32,)) == "numba"
    with pytest.raises(ValueError, match="impl"):
        K.affine_forward(a32, a32, a32, impl="cupy")               # CuPy arrays run the reference


# -- Numba CUDA under the simulator (in a subprocess: the variable must precede numba's import)
CUDASIM_SCRIPT = textwrap.dedent("""
    import numpy as np
    from scratchgen.kernels import coupling as K
    import test_coupling_kernels as T
    K.CUDA_MAX_THREADS = 4   # rows wider than a block: each thread loops over several columns
    K.CUDA_MAX_BLOCKS = 2    # fewer blocks than rows: the kernels grid-stride
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        for n, d in ((1, 1), (3, 5), (5, 9)):
            s = rng.uniform(-5, 5, (n, d)).astype(dtype)
            x, t, g = (rng.uniform(-10, 10, (n, d)).astype(dtype) for _ in range(3))
            gl = rng.uniform(-10, 10, n).astype(dtype)
            T.check_against_reference("cuda", dtype, s, x, t, g, gl)
    # The simulator evaluates math.exp in Python, which raises OverflowError above 709.78 where
    # CUDA returns inf; so extremes here stay below that in float64 (500 still overflows float32).
    s = np.array([[500.0, -1000.0, 88.8, -104.0, np.inf, -np.inf, np.nan, 0.0]], np.float32)
    x, t = np.full_like(s, 2.0), np.full_like(s, 0.5)
    with np.errstate(all="ignore"):
        y, ld = K.affine_forward(x, s, t, impl="cuda")
        yr, ldr = K.affine_forward(x, s, t, impl="reference")
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(ld, ldr)
    print("CUDASIM-OK")
""")


def test_cuda_simulator_matches_reference():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", CUDASIM_SCRIPT], env=env, cwd=here,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "CUDASIM-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


# -- CuPy, on a real GPU only --------------------------------------------------------
# (the `cp` fixture, CuPy on a real GPU or a clean skip, is in conftest.py)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", [None, "cuda"])
def test_gpu_kernels_match_reference(cp, impl, dtype):
    rng = np.random.default_rng(5)
    for n, d in ((1, 1), (5, 9), (300, 392), (3, 1000)):
        s = rng.uniform(-5, 5, (n, d)).astype(dtype)
        x, t, g = (rng.uniform(-10, 10, (n, d)).astype(dtype) for _ in range(3))
        gl = rng.uniform(-10, 10, n).astype(dtype)
        dev = [cp.asarray(a) for a in (s, x, t, g, gl)]
        y, ld = K.affine_forward(dev[1], dev[0], dev[2], impl=impl)
        assert isinstance(y, cp.ndarray) and isinstance(ld, cp.ndarray)  # results stay on the device
        yr, ldr = K.affine_forward(x, s, t, impl="reference")
        e = np.exp(s.astype(np.float64))
        assert_close(cp.asnumpy(y), yr, np.abs(x * e) + np.abs(t), RTOL[dtype] * 4)
        assert_close(cp.asnumpy(ld), ldr, np.abs(s).sum(1), RTOL[dtype] * 4)
        xi, nld = K.affine_inverse(y, dev[0], dev[2], impl=impl)
        assert_close(cp.asnumpy(xi), x, np.abs(x) + np.abs(t) / e, ROUNDTRIP[dtype])
        gx, gs, gt = K.affine_forward_backward(dev[1], dev[0], dev[3], dev[4], impl=impl)
        gxr, gsr, _ = K.affine_forward_backward(x, s, g, gl, impl="reference")
        assert_close(cp.asnumpy(gx), gxr, np.abs(g * e), RTOL[dtype] * 4)
        assert_close(cp.asnumpy(gs), gsr, np.abs(g * x * e) + np.abs(gl)[:, None], RTOL[dtype] * 4)
        out = K.affine_inverse_backward(dev[1], dev[0], dev[2], dev[3], dev[4], impl=impl)
        ref = K.affine_inverse_backward(x, s, t, g, gl, impl="reference")
        for a, b in zip(out, ref):
            assert_close(cp.asnumpy(a), b, np.abs(b) + np.abs(g) * (np.abs(x) + np.abs(t)) / e + np.abs(gl)[:, None],
                         RTOL[dtype] * 4)


def test_gpu_op_matches_unfused(cp):
    assert select(K.FAMILY, None, (cp.zeros((2, 2), cp.float32),)) == "reference"
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal((8, 12)) for _ in range(3)]
    fused = [sg.tensor(a, device="cuda", requires_grad=True) for a in arrays]
    plain = [sg.tensor(a, device="cuda", requires_grad=True) for a in arrays]
    y, ld = affine_coupling(*fused)
    ((y * y).sum() + ld.sum()).backward()
    x2, s, t = plain
    yu = x2 * s.exp() + t
    ((yu * yu).sum() + s.sum(1).sum()).backward()
    np.testing.assert_allclose(y.detach().numpy(), yu.detach().numpy(), rtol=1e-12)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10)


# -- the differentiable op -----------------------------------------------------------
def unfused(x2, s, t):
    return x2 * s.exp() + t, s.sum(1)


def unfused_inverse(y2, s, t):
    return (y2 - t) * (-s).exp(), -s.sum(1)


def fused(x2, s, t):
    return affine_coupling(x2, s, t)


def fused_inverse(y2, s, t):
    return affine_coupling_inverse(y2, s, t)


@settings(max_examples=8)
@given(coupling_arrays(dtypes=(np.float64,), max_n=4, max_d=5, s_range=2.0, count=3, real_range=3.0))
def test_op_gradcheck_and_gradgradcheck_like_the_unfused_composition(case):
    _, arrays, _ = case
    for fn in (fused, unfused, fused_inverse, unfused_inverse):
        assert sg.gradcheck(fn, arrays)
        assert sg.gradgradcheck(fn, arrays)


@pytest.mark.parametrize("fn", [fused, fused_inverse])
def test_op_gradchecks_on_nd_inputs_and_constant_inputs(fn):
    rng = np.random.default_rng(7)
    x2, s, t = (rng.standard_normal((2, 3, 2)) for _ in range(3))
    assert sg.gradcheck(fn, (x2, s, t)) and sg.gradgradcheck(fn, (x2, s, t))
    # x2 as data (no grad), as in a flow's first coupling layer
    assert sg.gradcheck(lambda s, t: fn(sg.tensor(x2), s, t), (s, t))
    assert sg.gradgradcheck(lambda s, t: fn(sg.tensor(x2), s, t), (s, t))


def first_and_second_order(fn, arrays, dtype, weights):
    """Values, first-order grads (fused backward kernel path), and the grad of a gradient
    norm (create_graph path) of a loss using both outputs."""
    xs = [sg.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out, ld = fn(*xs)
    wy, wl = (sg.tensor(w.astype(dtype)) for w in weights)
    loss = (out * out * wy).sum() + (ld * wl).sum()
    grads = sg.grad(loss, xs, create_graph=True)
    penalty = sum((g * g).sum() for g in grads)
    second = sg.grad(penalty, xs)
    out2, ld2 = fn(*xs)
    first = sg.grad((out2 * out2 * wy).sum() + (ld2 * wl).sum(), xs)  # create_graph=False: kernel path
    return out, ld, [g.detach() for g in grads], list(first), list(second)


@given(coupling_arrays(max_n=7, max_d=9, s_range=3.0, count=3), st.integers(0, 2**16))
def test_op_values_and_gradients_match_the_unfused_ops(case, seed):
    dtype, arrays, _ = case
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal(arrays[0].shape), rng.standard_normal(arrays[0].shape[:1]))
    rtol = {np.float32: 2e-5, np.float64: 1e-11}[dtype]
    for f, u in ((fused, unfused), (fused_inverse, unfused_inverse)):
        a = first_and_second_order(f, arrays, dtype, weights)
        b = first_and_second_order(u, arrays, dtype, weights)
        for ta, tb in [(a[0], b[0]), (a[1], b[1])] + list(zip(a[2] + a[3] + a[4], b[2] + b[3] + b[4])):
            assert ta.dtype == tb.dtype == dtype
            tb_ = tb.detach().numpy().astype(np.float64)
            scale = np.abs(tb_).max() + 1e-30
            np.testing.assert_allclose(ta.detach().numpy(), tb_, rtol=rtol, atol=rtol * scale)


@given(coupling_arrays(max_n=7, max_d=9, s_range=5.0, count=3))
@example((np.float32, [np.array([[-3.0]], np.float32), np.array([[1e-44]], np.float32),
                       np.array([[0.0]], np.float32)], np.array([0.0], np.float32)))
def test_inverse_of_forward_is_identity(case):
    dtype, (s, x2, t), _ = case
    y2, ld = affine_coupling(x2, s, t)
    x_back, nld = affine_coupling_inverse(y2, s, t)
    e = np.exp(s.astype(np.float64))
    # y2 = x2 e + t is rounded to the dtype, subnormal steps included; the inverse divides that
    # absolute error by e, so a y2 that underflowed comes back with an error of a step over e.
    step = float(np.finfo(dtype).smallest_subnormal)
    assert_close(x_back.numpy(), x2, np.abs(x2) + (np.abs(t) + step / ROUNDTRIP[dtype]) / e, ROUNDTRIP[dtype])
    np.testing.assert_array_equal(nld.numpy(), -ld.numpy())  # same kernel, same summation order


def test_op_with_only_one_output_used_and_partial_requires_grad():
    rng = np.random.default_rng(8)
    x2, s, t = (sg.tensor(rng.standard_normal((4, 6)), requires_grad=True) for _ in range(3))
    y, ld = affine_coupling(x2, s, t)
    ld.sum().backward()  # y unused
    assert x2.grad is None and t.grad is None
    np.testing.assert_array_equal(s.grad.numpy(), np.ones((4, 6)))
    s.grad = None
    y, _ = affine_coupling(x2, s, t)
    y.sum().backward()  # logdet unused
    np.testing.assert_allclose(s.grad.numpy(), x2.detach().numpy() * np.exp(s.detach().numpy()))
    np.testing.assert_array_equal(t.grad.numpy(), np.ones((4, 6)))
    t_const = sg.tensor(rng.standard_normal((4, 6)))
    y, ld = affine_coupling(x2.detach(), s, t_const)
    gs, = sg.grad((y.sum() + ld.sum()), [s])
    np.testing.assert_allclose(gs.numpy(), x2.detach().numpy() * np.exp(s.detach().numpy()) + 1)
    with sg.no_grad():
        y, ld = affine_coupling(x2, s, t)
    assert not y.requires_grad and not ld.requires_grad and y.grad_fn is None


def test_op_promotes_dtypes_and_checks_shapes():
    a32 = sg.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    a64 = sg.tensor(np.ones((2, 3)), requires_grad=True)
    y, ld = affine_coupling(a32, a64, np.zeros((2, 3), np.int64))
    assert y.dtype == ld.dtype == np.float64
    (y.sum() + ld.sum()).backward()
    assert a32.grad.dtype == np.float32 and a64.grad.dtype == np.float64
    with pytest.raises(ValueError, match="one shape"):
        affine_coupling(a32, a32, sg.ones(2, 4))
    with pytest.raises(ValueError, match="batch axis"):
        affine_coupling(sg.ones(3), sg.ones(3), sg.ones(3))


def test_op_impl_argument_reaches_the_kernels():
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal((3, 4)) for _ in range(3)]
    results = []
    for impl in ("reference", "numba"):
        xs = [sg.tensor(a, requires_grad=True) for a in arrays]
        y, ld = affine_coupling(*xs, impl=impl)
        (y.sum() + ld.sum()).backward()
        results.append([y.detach().numpy()] + [x.grad.numpy() for x in xs])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-13)
