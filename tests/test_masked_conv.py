"""PixelCNN masked convolution: the mask, the kernels (scratchgen.kernels.masked_conv), the op
(scratchgen.ops.masked_conv2d) and the layer (nn.MaskedConv2d). GPU implementations: test_masked_conv_cuda.py.

Tolerances are relative to the size of the terms, not of the result: an output is compared with
rtol * (the same convolution of |x| and |w|, plus |bias|), since the implementations sum the same
products in different orders. A wrong or missing tap moves an output by one whole term (~1/100 of
that scale here), far above rtol.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import nn
from scratchgen import threads as thread_policy
from scratchgen.kernels import force_impl, masked_conv as K, masked_conv_gemm, masked_conv_numba
from scratchgen.kernels.dispatch import select
from scratchgen.kernels.masked_geometry import int_pair
from scratchgen.ops import masked_conv2d

RTOL = {np.float32: 3e-5, np.float64: 1e-12}
CPU_IMPLS = ["gemm", "numba"]


# -- independent definitions, written from the paper's description ---------------------------
def expected_mask(c_out, c_in, k, mask_type, d):
    """1 where output channel o sees input channel c through tap (a, b): taps before the centre in
    raster order see every channel; at the centre, colour group of c < (A) or <= (B) that of o."""
    p = k // 2
    m = np.zeros((c_out, c_in, k, k))
    for o, c, a, b in itertools.product(range(c_out), range(c_in), range(k), range(k)):
        if (a, b) < (p, p):
            m[o, c, a, b] = 1
        elif (a, b) == (p, p):
            go, gc = o // (c_out // d), c // (c_in // d)
            m[o, c, a, b] = gc < go if mask_type == "A" else gc <= go
    return m


def out_size(size, k, stride, padding):
    """PyTorch's conv2d output size along one axis."""
    return (size + 2 * padding - k) // stride + 1


def dense_conv(x, w, b=None, stride=(1, 1), padding=None):
    """conv2d(x, w, b, stride, padding) by explicit loops over taps and output pixels (zero padding;
    padding None: k // 2)."""
    n, c_in, h, wd = x.shape
    c_out, _, k, _ = w.shape
    (sh, sw), (ph, pw) = stride, padding or (k // 2, k // 2)
    ho, wo = out_size(h, k, sh, ph), out_size(wd, k, sw, pw)
    y = np.zeros((n, c_out, ho, wo))
    for a, bb, i, j in itertools.product(range(k), range(k), range(ho), range(wo)):
        ii, jj = i * sh + a - ph, j * sw + bb - pw
        if 0 <= ii < h and 0 <= jj < wd:
            y[:, :, i, j] += x[:, :, ii, jj].astype(np.float64) @ w[:, :, a, bb].T.astype(np.float64)
    return y if b is None else y + b[:, None, None]


def dense_grads(x, w, g, stride=(1, 1), padding=None):
    """(dL/dx, dL/dw) of L = <g, dense_conv(x, w, stride=stride, padding=padding)>, by the same loops."""
    n, c_in, h, wd = x.shape
    c_out, _, k, _ = w.shape
    (sh, sw), (ph, pw) = stride, padding or (k // 2, k // 2)
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for a, bb, i, j in itertools.product(range(k), range(k), range(g.shape[2]), range(g.shape[3])):
        ii, jj = i * sh + a - ph, j * sw + bb - pw
        if 0 <= ii < h and 0 <= jj < wd:
            gx[:, :, ii, jj] += g[:, :, i, j] @ w[:, :, a, bb]
            gw[:, :, a, bb] += g[:, :, i, j].T @ x[:, :, ii, jj]
    return gx, gw


def assert_close(actual, expected, scale, dtype):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all()
    err = np.abs(actual - expected)
    bound = RTOL[dtype] * np.asarray(scale, np.float64) + 1e-30
    assert (err <= bound).all(), f"max error {err.max():.3g}, where the bound is {bound.flat[np.argmax(err - bound)]:.3g}"


# -- strategies -------------------------------------------------------------------------------
class Case:
    """stride: a pair; padding: a pair, or None (k // 2, PixelCNN's)."""

    def __init__(self, k, mask_type, d, n, c_in, c_out, h, w, dtype, bias, seed, stride=(1, 1), padding=None):
        self.k, self.mask_type, self.d, self.dtype = k, mask_type, d, dtype
        self.stride, self.padding = stride, padding
        ph, pw = padding or (k // 2, k // 2)
        self.out_size = (out_size(h, k, stride[0], ph), out_size(w, k, stride[1], pw))
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
        self.w = rng.standard_normal((c_out, c_in, k, k)).astype(dtype)
        self.b = rng.standard_normal(c_out).astype(dtype) if bias else None
        self.g = rng.standard_normal((n, c_out) + self.out_size).astype(dtype)
        self.mask = K.pixelcnn_mask(c_out, c_in, k, mask_type, d, dtype=dtype)
        # The same weights with garbage where the mask is zero: no kernel may read those.
        self.w_poisoned = np.where(self.mask > 0, self.w, np.nan).astype(dtype)

    def __repr__(self):
        return (f"Case(k={self.k}, {self.mask_type!r}, d={self.d}, x={self.x.shape}, w={self.w.shape}, "
                f"stride={self.stride}, padding={self.padding}, {np.dtype(self.dtype).name}, bias={self.b is not None})")

    @property
    def geometry(self):
        return dict(stride=self.stride, padding=self.padding)


@st.composite
def cases(draw, dtypes=(np.float32, np.float64), kernels=(1, 3, 5, 7), max_n=3, max_groups=2, max_side=6,
          strides=(1, 2, 3)):
    """Stride 1 with PixelCNN's padding half the time; otherwise any stride and padding (per axis),
    on images large enough for the padded kernel."""
    d, k = draw(st.sampled_from([1, 3])), draw(st.sampled_from(kernels))
    if draw(st.booleans()) or strides == (1,):
        stride, padding = (1, 1), None
        h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    else:
        stride = (draw(st.sampled_from(strides)), draw(st.sampled_from(strides)))
        padding = (draw(st.integers(0, k)), draw(st.integers(0, k)))
        low_h, low_w = max(1, k - 2 * padding[0]), max(1, k - 2 * padding[1])
        h, w = draw(st.integers(low_h, low_h + max_side)), draw(st.integers(low_w, low_w + max_side))
    return Case(k=k, mask_type=draw(st.sampled_from("AB")), d=d,
                n=draw(st.integers(1, max_n)), c_in=d * draw(st.integers(1, max_groups)),
                c_out=d * draw(st.integers(1, max_groups)), h=h, w=w, dtype=draw(st.sampled_from(dtypes)),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)), stride=stride, padding=padding)


def run_all(case, impl, w=None):
    w = case.w_poisoned if w is None else w
    y = K.masked_conv2d_forward(case.x, w, case.b, case.mask_type, case.d, **case.geometry, impl=impl)
    gx = K.masked_conv2d_input_grad(case.g, w, case.mask_type, case.d, **case.geometry,
                                    input_size=case.x.shape[2:], impl=impl)
    gw = K.masked_conv2d_weight_grad(case.x, case.g, case.k, case.mask_type, case.d, **case.geometry, impl=impl)
    return y, gx, gw


def scales(case):
    """The error scales: each result recomputed from absolute values, in float64."""
    ax, aw, ag = (np.abs(a).astype(np.float64) for a in (case.x, case.w, case.g))
    ab = None if case.b is None else np.abs(case.b).astype(np.float64)
    return run_all_ref(ax, aw, ab, ag, case)


def run_all_ref(x, w, b, g, case):
    geo = case.geometry
    return (K.masked_conv2d_forward(x, w, b, case.mask_type, case.d, **geo, impl="reference"),
            K.masked_conv2d_input_grad(g, w, case.mask_type, case.d, **geo, input_size=x.shape[2:], impl="reference"),
            K.masked_conv2d_weight_grad(x, g, case.k, case.mask_type, case.d, **geo, impl="reference"))


# -- the mask ---------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("d, c_out, c_in", [(1, 1, 1), (1, 4, 2), (3, 3, 3), (3, 6, 3), (3, 3, 9)])
def test_mask_matches_the_definition(k, mask_type, d, c_out, c_in):
    m = K.pixelcnn_mask(c_out, c_in, k, mask_type, d)
    assert m.shape == (c_out, c_in, k, k) and m.dtype == np.float32
    np.testing.assert_array_equal(m, expected_mask(c_out, c_in, k, mask_type, d))
    taps = K.unmasked_taps(k)
    assert len(taps) == (k // 2) * (k + 1) == len(set(taps))      # about half of the k * k taps
    assert all(m[:, :, a, b].all() for a, b in taps)
    assert m.sum() == len(taps) * c_out * c_in + sum((o1 - o0) * n_in for o0, o1, n_in in
                                                    K.centre_groups(c_out, c_in, mask_type, d))


def test_mask_examples():
    np.testing.assert_array_equal(K.pixelcnn_mask(1, 1, 3, "A")[0, 0], [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(K.pixelcnn_mask(1, 1, 3, "B")[0, 0], [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(K.pixelcnn_mask(1, 1, 1, "A"), [[[[0]]]])
    # RGB input, 6 features (2 per colour): R features see nothing at the centre for 'A', ...
    centre = K.pixelcnn_mask(6, 3, 3, "A", data_channels=3)[:, :, 1, 1]
    np.testing.assert_array_equal(centre, [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0]])
    centre = K.pixelcnn_mask(3, 6, 1, "B", data_channels=3)[:, :, 0, 0]
    np.testing.assert_array_equal(centre, [[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])


# -- the reference against dense loops --------------------------------------------------------
@given(cases(dtypes=(np.float64,), max_side=5))
def test_reference_matches_a_dense_convolution_with_the_masked_weight(case):
    wm = case.w * expected_mask(*case.w.shape[:3], case.mask_type, case.d)
    y, gx, gw = run_all(case, "reference")
    gx_d, gw_d = dense_grads(case.x, wm, case.g, case.stride, case.padding)
    np.testing.assert_allclose(y, dense_conv(case.x, wm, case.b, case.stride, case.padding), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, gx_d, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, gw_d * (wm != 0), rtol=1e-12, atol=1e-12)
    assert (gw[case.mask == 0] == 0).all()


# -- every CPU implementation against the reference -------------------------------------------
@pytest.mark.parametrize("impl", CPU_IMPLS)
@given(case=cases())
def test_cpu_implementations_match_reference(impl, case):
    ref = run_all_ref(case.x, case.w, case.b, case.g, case)
    out = run_all(case, impl)           # masked weights are NaN: they must never be read
    for a, r, s in zip(out, ref, scales(case)):
        assert a.dtype == case.dtype
        assert_close(a, r, s, case.dtype)
    assert (out[2][case.mask == 0] == 0).all()  # exactly zero gradient for the masked weights


@pytest.mark.parametrize("impl", ["reference"] + CPU_IMPLS)
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 1, 1), (1, 3, 1, 7), (1, 3, 6, 1)])
def test_empty_batches_and_tiny_images(impl, shape):
    rng = np.random.default_rng(0)
    case = Case(5, "A", 3, *shape[:2], 6, *shape[2:], np.float32, True, 1)
    case.x = rng.standard_normal(shape).astype(np.float32)
    case.g = rng.standard_normal((shape[0], 6) + shape[2:]).astype(np.float32)
    y, gx, gw = run_all(case, impl)
    assert y.shape == (shape[0], 6) + shape[2:] and gx.shape == shape and gw.shape == case.w.shape
    if shape[0]:
        for a, r, s in zip((y, gx, gw), run_all_ref(case.x, case.w, case.b, case.g, case), scales(case)):
            assert_close(a, r, s, np.float32)
    else:
        assert (gw == 0).all()


@pytest.mark.parametrize("c_in, c_out, stride, padding", [(6, 9, (1, 1), None), (9, 6, (1, 1), None),
                                                         (9, 6, (2, 1), (1, 3))])   # both gemm input-gradient forms
def test_parallel_kernels_and_gemm_chunking_match_reference(c_in, c_out, stride, padding, monkeypatch):
    case = Case(5, "B", 3, 5, c_in, c_out, 7, 6, np.float32, True, 2, stride=stride, padding=padding)
    ref, sc = run_all_ref(case.x, case.w, case.b, case.g, case), scales(case)
    monkeypatch.setattr(masked_conv_numba, "PARALLEL_MIN", 0)      # the prange kernels
    with thread_policy.limit(2):                                   # (parallel_pays needs 2 threads)
        for a, r, s in zip(run_all(case, "numba"), ref, sc):
            assert_close(a, r, s, np.float32)
    for chunk, threads in ((1, 1), (5000, 1), (1 << 30, 1), (1, 3), (5000, 2)):
        monkeypatch.setattr(masked_conv_gemm, "GEMM_CHUNK", chunk)  # one image per product, a few, all at once
        monkeypatch.setattr(masked_conv_gemm, "THREADS_MIN", 0)
        with thread_policy.limit(threads):                         # the images split over our threads
            for a, r, s in zip(run_all(case, "gemm"), ref, sc):
                assert_close(a, r, s, np.float32)


@pytest.mark.parametrize("impl", ["reference"] + CPU_IMPLS)
def test_stride_and_padding_examples(impl):
    """By hand: a 3x3 'B' kernel of ones, stride 2, no padding, on a 5x5 ramp: each output sums the
    window's top row and the centre row up to the centre."""
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    w = np.ones((1, 1, 3, 3))
    y = K.masked_conv2d_forward(x, w, stride=2, padding=0, impl=impl)
    top_left = [[x[0, 0, i, j:j + 3].sum() + x[0, 0, i + 1, j:j + 2].sum() for j in (0, 2)] for i in (0, 2)]
    np.testing.assert_allclose(y[0, 0], top_left)
    # the default, padding=k // 2, 'same' and (1, 1) are one geometry
    for padding in (None, "same", 1, (1, 1)):
        np.testing.assert_array_equal(K.masked_conv2d_forward(x, w, padding=padding, impl=impl),
                                      K.masked_conv2d_forward(x, w, impl=impl))
    assert K.masked_conv2d_forward(x, w, padding="valid", impl=impl).shape == (1, 1, 3, 3)
    assert K.masked_conv2d_forward(x, w, stride=(1, 2), padding=(0, 1), impl=impl).shape == (1, 1, 3, 3)


@pytest.mark.parametrize("impl", ["reference"] + CPU_IMPLS)
@pytest.mark.parametrize("stride, padding", [(2, 1), ((3, 1), (0, 2))])
def test_strided_empty_batches_and_windows_past_the_edge(impl, stride, padding):
    """Strides that skip the last rows and columns, padding wider than the kernel's reach, an empty batch."""
    for n, h, w in ((0, 6, 5), (2, 6, 5), (1, 5, 2)):
        case = Case(3, "A", 3, n, 3, 6, h, w, np.float32, True, 4, stride=int_pair(stride, "stride", 1),
                    padding=int_pair(padding, "padding", 0))
        y, gx, gw = run_all(case, impl)
        assert y.shape == (n, 6) + case.out_size and gx.shape == case.x.shape and gw.shape == case.w.shape
        for a, r, sc in zip((y, gx, gw), run_all_ref(case.x, case.w, case.b, case.g, case), scales(case)):
            assert_close(a, r, sc, np.float32)


def test_kernels_accept_strided_inputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 5, 8)).astype(np.float32)[::2, :, :, ::2]   # non-contiguous views
    w = rng.standard_normal((6, 6, 3, 3)).astype(np.float32).transpose(1, 0, 2, 3)
    g = np.broadcast_to(rng.standard_normal((1, 6, 5, 4)).astype(np.float32), (2, 6, 5, 4))  # as sum()'s vjp gives
    for impl in CPU_IMPLS:
        for fn, args in ((K.masked_conv2d_forward, (x, w)), (K.masked_conv2d_input_grad, (g, w)),
                         (K.masked_conv2d_weight_grad, (x, g, 3))):
            np.testing.assert_allclose(fn(*args, impl=impl), fn(*args, impl="reference"), rtol=1e-4, atol=1e-4)


def test_dispatch_and_errors():
    x32, w32 = np.zeros((1, 3, 4, 4), np.float32), np.zeros((6, 3, 3, 3), np.float32)
    assert select(K.FAMILY, None, (x32, w32)) == "gemm"
    assert select(K.FAMILY, None, (x32.astype(np.float16),)) == "reference"
    y = K.masked_conv2d_forward(np.ones((1, 1, 2, 2), np.float16), np.ones((1, 1, 3, 3), np.float16))
    assert y.dtype == np.float16 and y.tolist() == [[[[1, 2], [3, 4]]]]   # 'B': left, above, centre
    with pytest.raises(ValueError, match="impl"):
        K.masked_conv2d_forward(x32, w32, impl="fortran")
    with pytest.raises(TypeError, match="numba"):
        K.masked_conv2d_forward(x32.astype(np.float16), w32.astype(np.float16), impl="numba")
    with pytest.raises(TypeError, match="dtype"):
        K.masked_conv2d_forward(x32, w32.astype(np.float64))
    with pytest.raises(ValueError, match="channels"):
        K.masked_conv2d_forward(np.zeros((1, 2, 4, 4), np.float32), w32)
    with pytest.raises(ValueError, match="odd"):
        K.masked_conv2d_forward(np.zeros((1, 3, 4, 4), np.float32), np.zeros((6, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="square"):
        K.masked_conv2d_forward(x32, np.zeros((6, 3, 3, 5), np.float32))
    with pytest.raises(ValueError, match="mask_type"):
        K.masked_conv2d_forward(x32, w32, mask_type="C")
    with pytest.raises(ValueError, match="multiple of data_channels"):
        K.masked_conv2d_forward(np.zeros((1, 4, 4, 4), np.float32), np.zeros((6, 4, 3, 3), np.float32),
                                data_channels=3)
    with pytest.raises(ValueError, match="bias"):
        K.masked_conv2d_forward(x32, w32, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="4-D"):
        K.masked_conv2d_forward(x32[0], w32)
    with pytest.raises(ValueError, match="batch size"):
        K.masked_conv2d_weight_grad(x32, np.zeros((2, 6, 4, 4), np.float32), 3)
    with pytest.raises(ValueError, match="C_out"):
        K.masked_conv2d_input_grad(np.zeros((1, 5, 4, 4), np.float32), w32)
    with pytest.raises(ValueError, match="does not fit"):
        K.masked_conv2d_forward(np.zeros((1, 3, 2, 4), np.float32), w32, padding=0)
    with pytest.raises(ValueError, match="needs stride 1"):
        K.masked_conv2d_forward(x32, w32, stride=2, padding="same")
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        K.masked_conv2d_forward(x32, w32, stride=0)
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        K.masked_conv2d_forward(x32, w32, padding=(1, -1))
    with pytest.raises(ValueError, match="padding must be None"):
        K.masked_conv2d_forward(x32, w32, padding="full")
    g2 = np.zeros((1, 6, 2, 2), np.float32)
    with pytest.raises(ValueError, match="input_size"):
        K.masked_conv2d_input_grad(g2, w32, stride=2)
    assert K.masked_conv2d_input_grad(g2, w32, stride=2, input_size=(3, 4)).shape == (1, 3, 3, 4)
    assert K.masked_conv2d_input_grad(g2, w32, padding=0).shape == (1, 3, 4, 4)   # stride 1: inferred
    with pytest.raises(ValueError, match=r"gives outputs of \(3, 3\)"):
        K.masked_conv2d_input_grad(g2, w32, stride=2, input_size=(5, 6))
    with pytest.raises(ValueError, match="output image size"):
        K.masked_conv2d_weight_grad(x32, np.zeros((1, 6, 4, 4), np.float32), 3, stride=2)
    with force_impl("reference"):
        assert select(K.FAMILY, "gemm", (x32,)) == "reference"
        with force_impl("numba", "coupling"):                      # another family's: no effect here
            assert select(K.FAMILY, "gemm", (x32,)) == "reference"
    assert select(K.FAMILY, "gemm", (x32,)) == "gemm"
    with pytest.raises(ValueError, match="impl"):
        with force_impl("fortran"):
            pass


# -- the op -----------------------------------------------------------------------------------
@settings(max_examples=8)
@given(cases(dtypes=(np.float64,), kernels=(1, 3, 5), max_n=2, max_groups=1, max_side=3, strides=(1, 2)))
def test_op_gradcheck_and_gradgradcheck(case):
    args = (case.x, case.w) + (() if case.b is None else (case.b,))

    def f(*t):
        return masked_conv2d(*t, mask_type=case.mask_type, data_channels=case.d, **case.geometry)

    assert sg.gradcheck(f, args)
    assert sg.gradgradcheck(f, args)


def test_op_second_order_does_not_leak_through_the_inputs_history():
    """x made from the weight: the composed vjp must give the local gradients only; the engine
    adds the path through x itself (a naive nested grad would count it twice)."""
    rng = np.random.default_rng(4)
    x0, w = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 3, 3))

    def f(x0, w):
        x = x0 * w.sum() + w.mean()
        return masked_conv2d(x, w, mask_type="A").tanh()

    assert sg.gradcheck(f, (x0, w)) and sg.gradgradcheck(f, (x0, w))


@given(cases(max_side=5), st.sampled_from(["reference", "gemm", "numba"]))
def test_op_matches_conv2d_with_the_masked_weight_and_both_backward_paths_agree(case, impl):
    x, w = sg.tensor(case.x, requires_grad=True), sg.tensor(case.w, requires_grad=True)
    b = None if case.b is None else sg.tensor(case.b, requires_grad=True)
    params = [x, w] + ([] if b is None else [b])
    p = case.k // 2
    y = masked_conv2d(x, w, b, case.mask_type, case.d, **case.geometry, impl=impl)
    y_ref = sg.conv2d(x, w * sg.tensor(case.mask), b, stride=case.stride, padding=case.padding or p)
    weights = sg.tensor(case.g)
    sc = scales(case)
    assert y.dtype == case.dtype
    assert_close(y.detach().numpy(), y_ref.detach().numpy(), sc[0], case.dtype)
    kernel_path = sg.grad((y * weights).sum(), params, retain_graph=True)     # the kernels
    composed = sg.grad((y * weights).sum(), params, create_graph=True)        # conv2d composition
    conv_grads = sg.grad((y_ref * weights).sum(), params)
    for i, s in enumerate([sc[1], sc[2], np.abs(case.g).sum((0, 2, 3))][:len(params)]):
        assert_close(kernel_path[i].numpy(), conv_grads[i].numpy(), s, case.dtype)
        assert_close(composed[i].detach().numpy(), conv_grads[i].numpy(), s, case.dtype)
    for gw in (kernel_path[1].numpy(), composed[1].detach().numpy()):
        assert (gw[case.mask == 0] == 0).all()


def test_op_ignores_whatever_the_masked_weights_hold():
    rng = np.random.default_rng(5)
    x = sg.tensor(rng.standard_normal((2, 3, 4, 5)), requires_grad=True)
    w_clean = rng.standard_normal((6, 3, 3, 3))
    mask = K.pixelcnn_mask(6, 3, 3, "A", 3, dtype=np.float64)
    w_clean *= mask
    w = sg.tensor(np.where(mask > 0, w_clean, np.inf), requires_grad=True)
    y = masked_conv2d(x, w, None, "A", 3)
    np.testing.assert_allclose(y.detach().numpy(), dense_conv(x.detach().numpy(), w_clean), rtol=1e-12, atol=1e-12)
    for create_graph in (False, True):
        gx, gw = sg.grad((y * y).sum(), [x, w], create_graph=create_graph, retain_graph=True)
        assert np.isfinite(gx.detach().numpy()).all() and np.isfinite(gw.detach().numpy()).all()
        assert (gw.detach().numpy()[mask == 0] == 0).all()


def test_op_promotes_dtypes_and_checks_arguments():
    x = np.ones((1, 1, 3, 3), np.int64)
    w = sg.tensor(np.ones((2, 1, 3, 3), np.float32), requires_grad=True)
    y = masked_conv2d(x, w, mask_type="B")
    assert y.dtype == np.float32
    y = masked_conv2d(sg.tensor(np.ones((1, 1, 3, 3))), w)
    assert y.dtype == np.float64
    y.sum().backward()
    assert w.grad.dtype == np.float32
    with pytest.raises(ValueError, match="unsqueeze"):
        masked_conv2d(sg.tensor(np.ones((1, 3, 3), np.float32)), w)
    with pytest.raises(ValueError, match="channels"):
        masked_conv2d(sg.tensor(np.ones((1, 2, 3, 3), np.float32)), w)
    with pytest.raises(ValueError, match="mask_type"):
        masked_conv2d(sg.tensor(np.ones((1, 1, 3, 3), np.float32)), w, mask_type="a")
    with sg.no_grad():
        assert masked_conv2d(sg.tensor(np.ones((1, 1, 3, 3), np.float32)), w).grad_fn is None


# -- causality --------------------------------------------------------------------------------
def jacobian_support(fn, x, c_out):
    """nonzero[o, i, j, c, i', j']: whether output (o, i, j) of image 0 depends on input (c, i', j')."""
    x = sg.tensor(x, requires_grad=True)
    y = fn(x)
    _, _, h, w = x.shape
    out = np.zeros((c_out, h, w) + x.shape[1:], bool)
    for o, i, j in itertools.product(range(c_out), range(h), range(w)):
        g, = sg.grad(y[0, o, i, j], [x], retain_graph=True)
        out[o, i, j] = g.numpy()[0] != 0
    return out


def allowed(o, i, j, c, ii, jj, c_out, c_in, d, mask_type):
    """PixelCNN's ordering: earlier pixels in raster order; at the same pixel, earlier colour groups
    ('A'), or also the output's own group ('B')."""
    if (ii, jj) != (i, j):
        return (ii, jj) < (i, j)
    go, gc = o // (c_out // d), c // (c_in // d)
    return gc < go if mask_type == "A" else gc <= go


@pytest.mark.parametrize("k, mask_type, d", [(3, "A", 1), (5, "B", 1), (3, "A", 3), (3, "B", 3), (1, "B", 3)])
def test_one_layer_sees_exactly_its_unmasked_taps(k, mask_type, d):
    """Output (o, i, j) depends on input (c, i', j') exactly where the tap (i' - i + p, j' - j + p)
    is unmasked: never on later pixels in raster order (>= (i, j) for 'A' with one channel, > for 'B'),
    nor on later colour groups at the same pixel; every allowed dependency is really there."""
    rng = np.random.default_rng(6)
    c_in, c_out, h, w, p = 2 * d, 2 * d, 4, 5, k // 2
    x = rng.standard_normal((1, c_in, h, w))
    weight = sg.tensor(rng.standard_normal((c_out, c_in, k, k)))
    support = jacobian_support(lambda t: masked_conv2d(t, weight, None, mask_type, d), x, c_out)
    m = expected_mask(c_out, c_in, k, mask_type, d)
    for o, i, j, c, ii, jj in itertools.product(range(c_out), range(h), range(w), range(c_in), range(h), range(w)):
        a, b = ii - i + p, jj - j + p
        tap = 0 <= a < k and 0 <= b < k and m[o, c, a, b] == 1
        assert support[o, i, j, c, ii, jj] == tap, (o, i, j, c, ii, jj)
        if support[o, i, j, c, ii, jj]:
            assert allowed(o, i, j, c, ii, jj, c_out, c_in, d, mask_type)


@pytest.mark.parametrize("d", [1, 3])
def test_a_pixelcnn_stack_is_causal(d):
    """'A' first, then 'B' layers: the network's output at (o, i, j) never depends on input pixel
    (i, j) of colour group >= o's, nor on any later pixel, however deep the stack."""
    rng = np.random.default_rng(7)
    c, h, w = 2 * d, 5, 4
    layers = [nn.MaskedConv2d(d, c, 5, "A", d).double()] + [nn.MaskedConv2d(c, c, 3, "B", d).double() for _ in range(2)]
    layers.append(nn.MaskedConv2d(c, d, 1, "B", d).double())
    for layer in layers:
        layer.weight.data[...] = rng.standard_normal(layer.weight.shape)   # masked entries too: ignored

    def net(t):
        for layer in layers[:-1]:
            t = layer(t).tanh()
        return layers[-1](t)

    support = jacobian_support(net, rng.standard_normal((1, d, h, w)), d)
    for o, i, j, cc, ii, jj in itertools.product(range(d), range(h), range(w), range(d), range(h), range(w)):
        if support[o, i, j, cc, ii, jj]:
            assert allowed(o, i, j, cc, ii, jj, d, d, d, "A"), (o, i, j, cc, ii, jj)
    # ... and it does see the past: the pixels left and above, every channel; earlier colours here.
    assert support[:, 2, 2, :, 2, 1].all() and support[:, 2, 2, :, 1, 2].all() and support[:, 2, 2, :, 0, 3].all()
    assert all(support[o, 2, 2, cc, 2, 2] for o in range(d) for cc in range(o))


# -- the layer --------------------------------------------------------------------------------
def test_layer_init_like_torch_and_masked_weights_zero():
    layer = nn.MaskedConv2d(4, 8, 5, mask_type="A", generator=sg.Generator(0))
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    bound = 1 / np.sqrt(4 * 5 * 5)                     # torch's Conv2d bound for the full kernel
    mask = layer.mask
    assert w.shape == (8, 4, 5, 5) and w.dtype == np.float32 and b.shape == (8,)
    assert (w[mask == 0] == 0).all()
    used = w[mask == 1]
    assert np.abs(used).max() <= bound and np.abs(used).max() > 0.9 * bound and np.abs(b).max() <= bound
    assert abs(used.std() - bound / np.sqrt(3)) < 0.15 * bound   # uniform on [-bound, bound]
    no_bias = nn.MaskedConv2d(3, 3, 3, "B", 3, bias=False)
    assert no_bias.bias is None and [n for n, _ in no_bias.named_parameters()] == ["weight"]
    assert "mask_type='A'" in repr(layer) and "kernel_size=(5, 5)" in repr(layer)
    assert "data_channels=3" in repr(no_bias) and "bias=False" in repr(no_bias)
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_layer_forward_backward_and_optimizer_writes_to_masked_weights():
    rng = np.random.default_rng(8)
    layer = nn.MaskedConv2d(3, 6, 3, "B", data_channels=3).double()
    x = sg.tensor(rng.standard_normal((2, 3, 5, 4)))
    y = layer(x)
    assert y.shape == (2, 6, 5, 4)
    (y * y).sum().backward()
    assert (layer.weight.grad.numpy()[layer.mask == 0] == 0).all()
    layer.weight.data[layer.mask == 0] = 1e6            # what a careless optimizer might do
    np.testing.assert_array_equal(layer(x).detach().numpy(), y.detach().numpy())
    opt = sg.optim.Adam(layer.parameters(), lr=0.1, weight_decay=0.1)
    layer.weight.data[layer.mask == 0] = 0
    opt.step()
    assert (layer.weight.data[layer.mask == 0] == 0).all()
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\)"):
        layer(sg.tensor(np.zeros((2, 4, 5, 4))))


@pytest.mark.parametrize("kwargs, match", [
    (dict(mask_type="C"), "mask_type"),
    (dict(kernel_size=4), "odd"),
    (dict(kernel_size=(3, 5)), "odd"),
    (dict(kernel_size=0), "odd"),
    (dict(in_channels=4, data_channels=3), "multiple of data_channels"),
    (dict(out_channels=5, data_channels=3), "multiple of data_channels"),
    (dict(in_channels=0), "positive int"),
    (dict(data_channels=0), "positive int"),
    (dict(out_channels=2.0), "positive int"),
    (dict(stride=0), "stride"),
    (dict(stride=2, padding="same"), "needs stride 1"),
    (dict(padding=-1), "padding"),
])
def test_layer_validates_its_arguments(kwargs, match):
    args = dict(in_channels=3, out_channels=6, kernel_size=3, mask_type="A", data_channels=1) | kwargs
    with pytest.raises(ValueError, match=match):
        nn.MaskedConv2d(**args)
    assert nn.MaskedConv2d(3, 6, (3, 3)).kernel_size == 3


def test_layer_with_stride_and_padding_matches_conv2d():
    rng = np.random.default_rng(9)
    layer = nn.MaskedConv2d(3, 6, 5, "B", data_channels=3, stride=(2, 1), padding=(1, 0)).double()
    assert layer.stride == (2, 1) and layer.padding == (1, 0)
    assert "stride=(2, 1)" in repr(layer) and "padding=(1, 0)" in repr(layer)
    x = sg.tensor(rng.standard_normal((2, 3, 7, 6)))
    y = layer(x)
    mask = sg.tensor(layer.mask)
    expected = sg.conv2d(x, layer.weight * mask, layer.bias, stride=(2, 1), padding=(1, 0))
    assert y.shape == expected.shape == (2, 6, 3, 2)
    np.testing.assert_allclose(y.detach().numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert nn.MaskedConv2d(1, 2, 3).padding == (1, 1) and nn.MaskedConv2d(1, 2, 3, padding="valid").padding == (0, 0)
