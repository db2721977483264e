"""Convolutions, pooling and upsampling: first- and second-order gradient checks in float64 on
Hypothesis-drawn geometries, forward values against direct NumPy loops, unfold/fold adjointness,
the layers (shapes, init, state_dict, BatchNorm2d statistics, errors), and WGAN-GP's double
backward through a convolutional critic."""
import math

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import scratchgen as sg
import scratchgen.nn.functional as F
from scratchgen import nn
from scratchgen.testing import check_gradients


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def rand(rng, *shape):
    return rng.standard_normal(shape)


# -- independent NumPy references: direct sums over taps -------------------------------------
def conv2d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, c_in, h, wd = x.shape
    c_out, c_in_g, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c_out, oh, ow))
    per_group = c_out // groups
    for o in range(c_out):
        first = (o // per_group) * c_in_g
        for y in range(oh):
            for z in range(ow):
                for c in range(c_in_g):
                    for i in range(kh):
                        for j in range(kw):
                            out[:, o, y, z] += w[o, c, i, j] * xp[:, first + c, y * sh + i * dh, z * sw + j * dw]
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def conv_transpose2d_ref(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Each input pixel scatters weight * value onto its window of the output."""
    (sh, sw), (ph, pw), (eh, ew), (dh, dw) = pair(stride), pair(padding), pair(output_padding), pair(dilation)
    n, c_in, h, wd = x.shape
    _, c_out_g, kh, kw = w.shape
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + eh + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + ew + 1
    out = np.zeros((n, c_out_g * groups, oh, ow))
    c_in_g = c_in // groups
    for c in range(c_in):
        g = c // c_in_g
        for o in range(c_out_g):
            for y in range(h):
                for z in range(wd):
                    for i in range(kh):
                        for j in range(kw):
                            r, s = y * sh + i * dh - ph, z * sw + j * dw - pw
                            if 0 <= r < oh and 0 <= s < ow:
                                out[:, g * c_out_g + o, r, s] += x[:, c, y, z] * w[c, o, i, j]
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def unfold_ref(x, kernel, dilation=1, padding=0, stride=1):
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = pair(kernel), pair(dilation), pair(padding), pair(stride)
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c * kh * kw, oh * ow))
    for ch in range(c):
        for i in range(kh):
            for j in range(kw):
                for y in range(oh):
                    for z in range(ow):
                        out[:, ch * kh * kw + i * kw + j, y * ow + z] = xp[:, ch, y * sh + i * dh, z * sw + j * dw]
    return out


def pool_ref(x, kernel, stride, padding, reduce, fill):
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.empty(x.shape[:2] + (oh, ow))
    for y in range(oh):
        for z in range(ow):
            out[:, :, y, z] = reduce(xp[:, :, y * sh:y * sh + kh, z * sw:z * sw + kw], axis=(2, 3))
    return out


# -- Hypothesis geometries --------------------------------------------------------------------
ints = st.integers
pairs12 = st.sampled_from([1, 2, (1, 2), (2, 1)])


@st.composite
def conv_geometry(draw, max_side_extra=2):
    groups = draw(ints(1, 2))
    kh, kw = draw(ints(1, 3)), draw(ints(1, 3))
    stride, dilation = draw(pairs12), draw(pairs12)
    padding = draw(st.sampled_from([0, 1, 2, (0, 1), (2, 0)]))
    (dh, dw), (ph, pw) = pair(dilation), pair(padding)
    # The smallest input the dilated kernel fits in, plus a little; size-1 axes included.
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(ints(0, max_side_extra))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(ints(0, max_side_extra))
    n = draw(ints(1, 2))
    c_in, c_out = groups * draw(ints(1, 2)), groups * draw(ints(1, 2))
    return dict(n=n, c_in=c_in, c_out=c_out, h=h, w=w, kernel=(kh, kw), stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=draw(st.booleans()))


def conv_inputs(geo, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, geo["n"], geo["c_in"], geo["h"], geo["w"])
    w = rand(rng, geo["c_out"], geo["c_in"] // geo["groups"], *geo["kernel"])
    b = rand(rng, geo["c_out"]) if geo["bias"] else None
    return x, w, b


def conv_args(geo):
    return dict(stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"], groups=geo["groups"])


@st.composite
def transpose_geometry(draw):
    geo = draw(conv_geometry())
    geo["h"], geo["w"] = draw(ints(1, 3)), draw(ints(1, 3))
    (sh, sw), (dh, dw) = pair(geo["stride"]), pair(geo["dilation"])
    geo["output_padding"] = (draw(ints(0, max(sh, dh) - 1)), draw(ints(0, max(sw, dw) - 1)))
    (ph, pw), (kh, kw) = pair(geo["padding"]), geo["kernel"]
    out = ((geo["h"] - 1) * sh - 2 * ph + dh * (kh - 1) + geo["output_padding"][0] + 1,
           (geo["w"] - 1) * sw - 2 * pw + dw * (kw - 1) + geo["output_padding"][1] + 1)
    assume(min(out) >= 1)
    return geo


def transpose_inputs(geo, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, geo["n"], geo["c_in"], geo["h"], geo["w"])
    w = rand(rng, geo["c_in"], geo["c_out"] // geo["groups"], *geo["kernel"])
    b = rand(rng, geo["c_out"]) if geo["bias"] else None
    return x, w, b


def transpose_args(geo):
    return dict(stride=geo["stride"], padding=geo["padding"], output_padding=geo["output_padding"],
                groups=geo["groups"], dilation=geo["dilation"])


seeds = ints(0, 2 ** 16)


# -- forward values against the loops ---------------------------------------------------------
@given(conv_geometry(max_side_extra=3), seeds)
def test_conv2d_matches_loop_reference(geo, seed):
    x, w, b = conv_inputs(geo, seed)
    out = sg.conv2d(x, w, b, **conv_args(geo))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), conv2d_ref(x, w, b, **conv_args(geo)), rtol=1e-10, atol=1e-10)


@given(transpose_geometry(), seeds)
def test_conv_transpose2d_matches_loop_reference(geo, seed):
    x, w, b = transpose_inputs(geo, seed)
    out = sg.conv_transpose2d(x, w, b, **transpose_args(geo))
    np.testing.assert_allclose(out.numpy(), conv_transpose2d_ref(x, w, b, **transpose_args(geo)),
                               rtol=1e-10, atol=1e-10)


@given(conv_geometry(max_side_extra=3), seeds)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(geo, seed):
    # <conv2d(x, w), y> == <x, conv_transpose2d(y, w)>, output_padding chosen to restore x's size.
    x, w, _ = conv_inputs(geo, seed)
    args = conv_args(geo)
    y = np.random.default_rng(seed + 1).standard_normal(sg.conv2d(x, w, **args).shape)
    stride, padding, dilation = pair(geo["stride"]), pair(geo["padding"]), pair(geo["dilation"])
    extra = tuple(size - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
                  for size, o, s, p, d, k in zip(x.shape[2:], y.shape[2:], stride, padding, dilation, geo["kernel"]))
    assume(all(e < max(s, d) for e, s, d in zip(extra, stride, dilation)))
    xt = sg.conv_transpose2d(y, w, stride=geo["stride"], padding=geo["padding"], output_padding=extra,
                             groups=geo["groups"], dilation=geo["dilation"])
    assert xt.shape == x.shape
    lhs = float((sg.conv2d(x, w, **args).numpy() * y).sum())
    assert lhs == pytest.approx(float((x * xt.numpy()).sum()), rel=1e-10, abs=1e-10)


@given(conv_geometry(max_side_extra=3), st.sampled_from([None, (0, 1, 2, 0), (1, 0, 0, 2)]),
       st.sampled_from([np.float32, np.float64]), st.booleans(), seeds)
def test_col2im_kernel_matches_the_numpy_loop(geo, sides, dtype, parallel, seed):
    # The compiled col2im (conv2d's input gradient, conv_transpose2d's forward) against the
    # strided-add reference it replaces, on uneven padding too, serial and parallel bodies.
    from scratchgen.kernels import col2im, force_impl
    from scratchgen.ops.conv import _row2im, _window
    (ph, pw) = pair(geo["padding"])
    padding = sides or (ph, ph, pw, pw)
    kernel, stride, dilation = geo["kernel"], pair(geo["stride"]), pair(geo["dilation"])
    size = (geo["h"] + 2, geo["w"] + 1)
    assume(all(d * (k - 1) + 1 <= s + a + b for d, k, s, a, b in
               zip(dilation, kernel, size, padding[::2], padding[1::2])))
    win = _window(size, kernel, dilation, padding, stride)
    shape = (geo["n"], geo["c_in"]) + size
    g = geo["groups"]
    rows = np.random.default_rng(seed).standard_normal(
        (g, geo["n"] * win.blocks[0] * win.blocks[1], kernel[0] * kernel[1] * geo["c_in"] // g)).astype(dtype)
    with force_impl("reference", "col2im"):
        want = _row2im(np, rows, shape, win, g)
    old = col2im.PARALLEL_MIN
    col2im.PARALLEL_MIN = 0 if parallel else 1 << 62
    try:
        got = _row2im(np, rows, shape, win, g)
    finally:
        col2im.PARALLEL_MIN = old
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_conv2d_float32_same_and_valid_padding_unbatched_and_int_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    for k, d in [(3, 1), (4, 1), (2, 2), (4, 2)]:
        w = rng.standard_normal((4, 3, k, k)).astype(np.float32)
        same = sg.conv2d(x, w, padding="same", dilation=d)
        assert same.shape == (2, 4, 6, 5) and same.dtype == np.float32
        # PyTorch puts the odd padding element at the bottom/right: pad by hand and compare.
        t = d * (k - 1)
        padded = np.pad(x, ((0, 0), (0, 0), (t // 2, t - t // 2), (t // 2, t - t // 2)))
        np.testing.assert_allclose(same.numpy(), conv2d_ref(padded.astype(np.float64), w.astype(np.float64),
                                                            dilation=d), rtol=1e-4, atol=1e-4)
        if 5 >= t + 1:
            assert sg.conv2d(x, w, padding="valid", dilation=d).shape == (2, 4, 6 - t, 5 - t)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    single = sg.conv2d(x[0], w, padding=1)
    assert single.shape == (4, 6, 5)
    np.testing.assert_array_equal(single.numpy(), sg.conv2d(x[:1], w, padding=1).numpy()[0])
    as_int = sg.conv2d(np.arange(2 * 3 * 36).reshape(2, 3, 6, 6), w)
    assert as_int.dtype == np.float32


# -- unfold / fold ---------------------------------------------------------------------------
@given(conv_geometry(), seeds)
def test_unfold_matches_loop_and_fold_is_its_adjoint(geo, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, geo["n"], geo["c_in"], geo["h"], geo["w"])
    args = dict(kernel_size=geo["kernel"], dilation=geo["dilation"], padding=geo["padding"], stride=geo["stride"])
    cols = sg.unfold(x, **args)
    np.testing.assert_array_equal(cols.numpy(), unfold_ref(x, geo["kernel"], geo["dilation"], geo["padding"],
                                                           geo["stride"]))
    a = rand(rng, *cols.shape)
    folded = sg.fold(a, (geo["h"], geo["w"]), **args)
    assert folded.shape == x.shape
    # <fold(a), b> == <a, unfold(b)>
    assert float((folded.numpy() * x).sum()) == pytest.approx(float((a * cols.numpy()).sum()), rel=1e-10, abs=1e-10)


@given(conv_geometry(max_side_extra=1), seeds)
def test_unfold_and_fold_gradients(geo, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 1, geo["c_in"], geo["h"], geo["w"])
    args = dict(kernel_size=geo["kernel"], dilation=geo["dilation"], padding=geo["padding"], stride=geo["stride"])
    check_gradients(lambda t: sg.unfold(t, **args) ** 2, x)  # squared: second order is not zero
    cols = rand(rng, *sg.unfold(x, **args).shape)
    check_gradients(lambda t: sg.fold(t, (geo["h"], geo["w"]), **args) ** 2, cols)


# -- gradient checks, first and second order --------------------------------------------------
@given(conv_geometry(max_side_extra=1), seeds)
def test_conv2d_gradients(geo, seed):
    x, w, b = conv_inputs(geo, seed)
    args = conv_args(geo)
    if b is None:
        check_gradients(lambda x_, w_: sg.conv2d(x_, w_, **args), x, w)
    else:
        check_gradients(lambda x_, w_, b_: sg.conv2d(x_, w_, b_, **args), x, w, b)


@given(transpose_geometry(), seeds)
def test_conv_transpose2d_gradients(geo, seed):
    x, w, b = transpose_inputs(geo, seed)
    args = transpose_args(geo)
    if b is None:
        check_gradients(lambda x_, w_: sg.conv_transpose2d(x_, w_, **args), x, w)
    else:
        check_gradients(lambda x_, w_, b_: sg.conv_transpose2d(x_, w_, b_, **args), x, w, b)


@st.composite
def pool_case(draw, dilation=False):
    kh, kw = draw(ints(1, 3)), draw(ints(1, 3))
    stride = draw(st.sampled_from([None, 1, 2, (1, 2)]))
    padding = (draw(ints(0, kh // 2)), draw(ints(0, kw // 2)))
    d = draw(pairs12) if dilation else 1
    (dh, dw) = pair(d)
    h = max(1, dh * (kh - 1) + 1 - 2 * padding[0]) + draw(ints(0, 2))
    w = max(1, dw * (kw - 1) + 1 - 2 * padding[1]) + draw(ints(0, 2))
    return (draw(ints(1, 2)), draw(ints(1, 2)), h, w), (kh, kw), stride, padding, d


@given(pool_case(dilation=True), seeds)
def test_max_pool2d_values_and_gradients(case, seed):
    shape, kernel, stride, padding, dilation = case
    x = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) * 0.1  # distinct: no ties
    gaps = np.diff(np.sort(x.ravel()))
    assume(gaps.size == 0 or gaps.min() > 1e-3)
    out = sg.max_pool2d(x, kernel, stride, padding, dilation)
    assume(np.isfinite(out.numpy()).all())  # a dilated window can hold padding only: -inf, as PyTorch
    if dilation == 1:
        np.testing.assert_array_equal(out.numpy(), pool_ref(x, kernel, stride or kernel, padding, np.max, -np.inf))
    check_gradients(lambda t: sg.max_pool2d(t, kernel, stride, padding, dilation) ** 2, x)


@given(pool_case(), seeds)
def test_avg_pool2d_values_and_gradients(case, seed):
    shape, kernel, stride, padding, _ = case
    x = np.random.default_rng(seed).standard_normal(shape)
    out = sg.avg_pool2d(x, kernel, stride, padding)
    np.testing.assert_allclose(out.numpy(), pool_ref(x, kernel, stride or kernel, padding, np.mean, 0.0),
                               rtol=1e-12, atol=1e-12)
    check_gradients(lambda t: sg.avg_pool2d(t, kernel, stride, padding) ** 2, x)


@given(ints(1, 2), ints(1, 3), ints(1, 3), st.sampled_from([1, 2, 3, (1, 2), (3, 1)]), seeds)
def test_upsample_nearest_values_and_gradients(c, h, w, scale, seed):
    x = np.random.default_rng(seed).standard_normal((2, c, h, w))
    sh, sw = pair(scale)
    out = sg.upsample_nearest2d(x, scale)
    np.testing.assert_array_equal(out.numpy(), x.repeat(sh, axis=2).repeat(sw, axis=3))
    np.testing.assert_array_equal(F.interpolate(sg.tensor(x), scale_factor=scale).numpy(), out.numpy())
    np.testing.assert_array_equal(F.interpolate(sg.tensor(x), size=(h * sh, w * sw)).numpy(), out.numpy())
    check_gradients(lambda t: sg.upsample_nearest2d(t, scale) ** 2, x)


def test_max_pool_ties_share_the_gradient():
    x = sg.tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    sg.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((1, 1, 2, 2), 0.25))


# -- errors name the culprit -----------------------------------------------------------------
def test_conv_errors_name_the_bad_shapes():
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels but weight expects 4 \(C_in/groups=4, "
                                         r"groups=1\); weight shape \(8, 4, 3, 3\)"):
        sg.conv2d(x, np.zeros((8, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\).*got shape \(8, 8\)"):
        sg.conv2d(x[0, 0], np.zeros((8, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"weight must be 4-D.*\(8, 3, 3\)"):
        sg.conv2d(x, np.zeros((8, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"not divisible by groups=2"):
        sg.conv2d(np.zeros((1, 4, 5, 5)), np.zeros((3, 2, 1, 1)), groups=2)
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\).*\(3,\)"):
        sg.conv2d(x, np.zeros((8, 3, 3, 3), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"kernel \(9x9.*larger than the padded input \(8x8"):
        sg.conv2d(x, np.zeros((8, 3, 9, 9), np.float32))
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        sg.conv2d(x, np.zeros((8, 3, 3, 3), np.float32), stride=2, padding="same")
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        sg.conv2d(x, np.zeros((8, 3, 3, 3), np.float32), stride=0)
    with pytest.raises(TypeError, match=r"padding must be an int or a pair"):
        sg.conv2d(x, np.zeros((8, 3, 3, 3), np.float32), padding=(1, 1, 1))
    with pytest.raises(ValueError, match=r"conv_transpose2d: input has 3 channels but weight expects 4"):
        sg.conv_transpose2d(x, np.zeros((4, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than stride \(2, 2\)"):
        sg.conv_transpose2d(x, np.zeros((3, 2, 3, 3), np.float32), stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"fold: input has L=5 columns.*3x3=9 windows"):
        sg.fold(np.zeros((1, 4, 5)), (4, 4), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) must be at most half the kernel"):
        sg.max_pool2d(x, 2, padding=2)
    sg.max_pool2d(x, 2, padding=1, dilation=2)  # half the dilated kernel (3) is allowed, as in PyTorch
    with pytest.raises(ValueError, match=r"scale_factor must be >= 1"):
        sg.upsample_nearest2d(x, 0)
    with pytest.raises(ValueError, match=r"only mode='nearest'"):
        F.interpolate(sg.tensor(x), scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match=r"not an integer multiple"):
        F.interpolate(sg.tensor(x), size=12)


# -- layers ----------------------------------------------------------------------------------
def test_conv_layers_shapes_init_and_repr():
    sg.manual_seed(0)
    conv = nn.Conv2d(4, 16, 3, stride=2, padding=1, groups=2)
    assert conv.weight.shape == (16, 2, 3, 3) and conv.bias.shape == (16,)
    bound = 1 / math.sqrt(2 * 9)  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    largest = np.abs(conv.weight.detach().numpy()).max()
    assert 0.8 * bound < largest <= bound
    assert np.abs(conv.bias.detach().numpy()).max() <= bound
    assert conv(sg.randn(5, 4, 9, 9)).shape == (5, 16, 5, 5)
    assert "groups=2" in repr(conv) and "stride=(2, 2)" in repr(conv)
    assert nn.Conv2d(3, 5, (1, 3), padding="same", bias=False)(sg.randn(2, 3, 4, 6)).shape == (2, 5, 4, 6)

    up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    assert up.weight.shape == (8, 4, 4, 4)
    assert np.abs(up.weight.detach().numpy()).max() <= 1 / math.sqrt(4 * 16)  # fan_in = weight.shape[1] * kh * kw
    x = sg.randn(2, 8, 7, 7)
    assert up(x).shape == (2, 4, 14, 14)
    odd = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
    assert odd(x).shape == (2, 4, 14, 14) and "output_padding=(1, 1)" in repr(odd)
    plain = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1)
    assert plain(x).shape == (2, 4, 13, 13) and plain(x, output_size=(14, 14)).shape == (2, 4, 14, 14)
    with pytest.raises(ValueError, match=r"output_size \(16, 16\) cannot be reached"):
        plain(x, output_size=(16, 16))

    assert nn.MaxPool2d(2)(sg.randn(2, 3, 7, 7)).shape == (2, 3, 3, 3)
    assert nn.AvgPool2d(3, stride=1, padding=1)(sg.randn(2, 3, 7, 7)).shape == (2, 3, 7, 7)
    assert nn.Upsample(scale_factor=2)(sg.randn(2, 3, 7, 7)).shape == (2, 3, 14, 14)
    assert nn.Upsample(size=(14, 21))(sg.randn(2, 3, 7, 7)).shape == (2, 3, 14, 21)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match=r"in_channels=3 and out_channels=8 must both be divisible by groups=2"):
        nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller"):
        nn.ConvTranspose2d(3, 8, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv2d: input has 1 channels but weight expects 3.*\(2, 1, 8, 8\)"):
        nn.Conv2d(3, 8, 3)(sg.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\): expected input \(N, 4, H, W\), got \(2, 3, 5, 5\)"):
        nn.BatchNorm2d(4)(sg.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"Residual: the wrapped Conv2d changed the shape \(2, 3, 5, 5\)"):
        nn.Residual(nn.Conv2d(3, 3, 3))(sg.randn(2, 3, 5, 5))


def test_conv_state_dict_round_trip():
    def model():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.ResidualBlock(4),
                             nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1))
    sg.manual_seed(1)
    a = model()
    x = sg.randn(3, 1, 6, 6)
    a(x)  # a training step moves BatchNorm's running statistics
    a.eval()
    sg.manual_seed(2)
    b = model()
    b.load_state_dict(a.state_dict())
    b.eval()
    assert set(a.state_dict()) == set(b.state_dict())
    assert "3.body.1.running_mean" in a.state_dict()
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())


def test_batchnorm2d_train_and_eval_statistics_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 5, 6)) * 2 + 1
    bn = nn.BatchNorm2d(3, momentum=0.2).double()
    bn.weight.data[...] = [1.0, 2.0, 0.5]
    bn.bias.data[...] = [0.0, -1.0, 3.0]
    out = bn(sg.tensor(x)).detach()
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    expected = ((x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-5)
                * bn.weight.detach().numpy().reshape(1, 3, 1, 1) + bn.bias.detach().numpy().reshape(1, 3, 1, 1))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    m = x.size // 3
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.8 + 0.2 * var * m / (m - 1), rtol=1e-12)
    assert int(bn.num_batches_tracked.numpy()) == 1
    bn.eval()
    y = rng.standard_normal((2, 3, 5, 6))
    rm, rv = bn.running_mean.numpy().reshape(1, 3, 1, 1), bn.running_var.numpy().reshape(1, 3, 1, 1)
    np.testing.assert_allclose(bn(sg.tensor(y)).detach().numpy(),
                               (y - rm) / np.sqrt(rv + 1e-5) * bn.weight.detach().numpy().reshape(1, 3, 1, 1)
                               + bn.bias.detach().numpy().reshape(1, 3, 1, 1), rtol=1e-10, atol=1e-10)
    # F.batch_norm takes (N, C, H, W) directly, and its gradients check out.
    check_gradients(lambda t, w, b: F.batch_norm(t, weight=w, bias=b, training=True),
                    x[:2, :, :2, :3], np.array([1.0, 2.0, 0.5]), np.array([0.1, -1.0, 3.0]))


def test_residual_block_keeps_shape_and_trains():
    sg.manual_seed(0)
    block = nn.ResidualBlock(3, kernel_size=3)
    plain = nn.ResidualBlock(3, kernel_size=2, batch_norm=False)  # even kernel: 'same' pads asymmetrically
    assert sum(1 for m in block.modules() if isinstance(m, nn.BatchNorm2d)) == 2
    assert all(m.bias is None for m in block.modules() if isinstance(m, nn.Conv2d))
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
    x = sg.randn(2, 3, 5, 5)
    for m in (block, plain):
        out = m(x)
        assert out.shape == x.shape and out.detach().numpy().min() >= 0  # relu after the sum
        out.sum().backward()
        assert all(p.grad is not None and p.grad.shape == p.shape for p in m.parameters())
    r = nn.Residual(nn.Conv2d(3, 3, 3, padding=1))
    np.testing.assert_allclose(r(x).detach().numpy(), (x + r.module(x)).detach().numpy())


# -- WGAN-GP: double backward through a convolutional critic ---------------------------------
def test_gradient_penalty_through_conv_critic_matches_finite_differences():
    """penalty = mean((|d critic(x) / dx| - 1)^2); its weight gradients need conv2d's second order."""
    rng = np.random.default_rng(0)
    x = sg.tensor(rng.standard_normal((3, 1, 5, 5)), requires_grad=True)
    shapes = [(2, 1, 3, 3), (2,), (1, 2 * 3 * 3), (1,)]
    params = [rng.standard_normal(s) * 0.5 for s in shapes]

    def penalty(w1, b1, w2, b2):
        h = F.leaky_relu(F.conv2d(x, w1, b1, stride=2, padding=1), 0.2)
        score = F.linear(h.flatten(1), w2, b2)
        gx, = sg.grad(score.sum(), x, create_graph=True)
        norm = (gx.flatten(1) ** 2).sum(axis=1).sqrt()
        return ((norm - 1) ** 2).mean()

    sg.gradcheck(penalty, params, atol=1e-7, rtol=1e-5)

    # The same through modules and .backward(), against central differences by hand.
    critic = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Flatten(),
                           nn.Linear(18, 1)).double()
    ws = list(critic.parameters())

    def gp():
        gx, = sg.grad(critic(x).sum(), x, create_graph=True)
        return ((gx.flatten(1).pow(2).sum(axis=1).sqrt() - 1) ** 2).mean()

    gp().backward()
    for p in ws:
        flat, numeric = p.data.reshape(-1), np.zeros(p.size)
        for i in range(p.size):
            keep = flat[i]
            flat[i] = keep + 1e-6
            plus = gp().item()
            flat[i] = keep - 1e-6
            minus = gp().item()
            flat[i] = keep
            numeric[i] = (plus - minus) / 2e-6
        # The last bias does not change d critic / dx: no gradient reaches it (None), and numerically 0.
        analytic = np.zeros(p.size) if p.grad is None else p.grad.numpy().reshape(-1)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    assert ws[0].grad is not None and np.abs(ws[0].grad.numpy()).max() > 1e-3


def test_conv2d_takes_uneven_padding_as_top_bottom_left_right():
    """padding=(top, bottom, left, right) is conv2d of the zero-padded input, values and gradients
    (the causal convolutions of the Gated PixelCNN use it)."""
    from scratchgen.ops.shape import pad
    rng = np.random.default_rng(0)
    x = sg.tensor(rng.standard_normal((2, 3, 5, 4)), requires_grad=True)
    w = sg.tensor(rng.standard_normal((2, 3, 2, 3)), requires_grad=True)
    b = sg.tensor(rng.standard_normal(2), requires_grad=True)
    sides = (1, 0, 2, 1)
    ours = sg.conv2d(x, w, b, padding=sides)
    padded = sg.conv2d(pad(x, ((0, 0), (0, 0), sides[:2], sides[2:])), w, b)
    np.testing.assert_allclose(ours.detach().numpy(), padded.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert sg.gradcheck(lambda x, w, b: sg.conv2d(x, w, b, padding=sides), (x, w, b))
    assert sg.gradgradcheck(lambda x, w, b: sg.conv2d(x, w, b, padding=sides), (x, w, b))
    with pytest.raises(ValueError, match=r"must be ints >= 0"):
        sg.conv2d(x, w, padding=(1, -1, 0, 0))


@st.composite
def narrow_output_geometry(draw):
    """Stride-1 convs with fewer output than input channels: conv2d scatters each input pixel
    onto its outputs (the way conv_transpose2d works) instead of gathering windows."""
    kh, kw = draw(ints(2, 3)), draw(ints(1, 3))
    dilation = draw(pairs12)
    padding = draw(st.sampled_from([0, 1, (1, 0), "same", (1, 0, 0, 1), (0, 2, 1, 0)]))
    (dh, dw) = pair(dilation)
    h = dh * (kh - 1) + 1 + draw(ints(0, 3))
    w = dw * (kw - 1) + 1 + draw(ints(0, 3))
    c_out = draw(ints(1, 2))
    return dict(n=draw(ints(1, 2)), c_in=c_out + draw(ints(1, 2)), c_out=c_out, h=h, w=w, kernel=(kh, kw),
                stride=1, padding=padding, dilation=dilation, groups=1, bias=draw(st.booleans()))


def _uneven_ref_args(geo, x):
    """The loop reference takes symmetric padding: pad an uneven or 'same' padding by hand."""
    args = conv_args(geo)
    padding = args["padding"]
    if padding == "same":
        (kh, kw), (dh, dw) = geo["kernel"], pair(geo["dilation"])
        th, tw = dh * (kh - 1), dw * (kw - 1)
        padding = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    if isinstance(padding, tuple) and len(padding) == 4:
        t, b_, l, r = padding
        x = np.pad(x, ((0, 0), (0, 0), (t, b_), (l, r)))
        args["padding"] = 0
    return x, args


@given(narrow_output_geometry(), seeds)
def test_conv2d_with_narrow_output_matches_loop_reference_and_gradients(geo, seed):
    x, w, b = conv_inputs(geo, seed)
    args = conv_args(geo)
    out = sg.conv2d(x, w, b, **args)
    x_ref, ref_args = _uneven_ref_args(geo, x)
    np.testing.assert_allclose(out.numpy(), conv2d_ref(x_ref, w, b, **ref_args), rtol=1e-10, atol=1e-10)
    check_gradients(lambda x_, w_: sg.conv2d(x_, w_, **args), x, w)
