"""Hypothesis strategies and a one-line gradient property check, for our tests and yours.

    from scratchgen.testing import gradient_test
    test_log = gradient_test(sg.log, "positive")            # unary, any shape
    test_mul = gradient_test(lambda x, y: x * y, "real", "real")  # broadcast shapes

Each generated test draws float64 arrays with mutually broadcastable shapes (0-d and
size-1 axes included), elements from safe domains, and runs first- and second-order
gradient checks. Needs the `dev` extra (hypothesis).

Where CuPy sees a CUDA device, every check also runs the function on the GPU and compares its
outputs and first- and second-order gradients with the CPU's (`check_same_on_gpu`), so the op
tests double as GPU tests there. SCRATCHGEN_TEST_GPU=0 turns that off.
"""
import os

import numpy as np
from hypothesis import assume, given, strategies as st
from hypothesis.extra import numpy as hnp

from . import backend
from .autograd import grad
from .gradcheck import gradcheck, gradgradcheck
from .tensor import Tensor

# Domains keep every op smooth and well-conditioned where finite differences look.
DOMAINS = {
    "real": (-3.0, 3.0),
    "positive": (0.2, 3.0),       # log, sqrt, a divisor, a variance
    "unit": (0.05, 0.95),         # probabilities
    "nonzero": (0.2, 3.0),        # either sign, away from the kink at 0 (abs, relu)
}


def elements(domain="real"):
    """A strategy for float64 values in a named domain."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose from {sorted(DOMAINS)}")
    lo, hi = DOMAINS[domain]
    magnitude = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if domain == "nonzero":
        return st.tuples(magnitude, st.booleans()).map(lambda p: p[0] if p[1] else -p[0])
    return magnitude


def edge_elements():
    """Values where formulas meet their edges: exact zeros, ties (a few repeated values), and
    ordinary reals between them."""
    return st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]), st.floats(-3.0, 3.0, allow_nan=False))


@st.composite
def edge_arrays(draw, min_dims=0, max_dims=3, max_side=3, dtypes=(np.float64,)):
    """Arrays at the edges: empty and size-1 axes, 0-d, exact zeros and ties; with integer
    dtypes in `dtypes`, integer arrays too."""
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side))
    dtype = draw(st.sampled_from(dtypes))
    if np.dtype(dtype).kind in "iu":
        return draw(hnp.arrays(dtype, shape, elements=st.integers(0, 3)))
    return draw(hnp.arrays(dtype, shape, elements=edge_elements()))


def arrays(shape, domain="real"):
    return hnp.arrays(np.float64, shape, elements=elements(domain))


@st.composite
def broadcastable_arrays(draw, *domains, min_dims=0, max_dims=3, min_side=1, max_side=3):
    """One array per domain, with mutually broadcastable shapes (0-d and size-1 axes included)."""
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=len(domains), min_dims=min_dims,
                                                    max_dims=max_dims, min_side=min_side, max_side=max_side))
    return tuple(draw(arrays(s, d)) for s, d in zip(shapes.input_shapes, domains))


def check_gradients(fn, *inputs, atol=1e-5, rtol=1e-3, second_order=True):
    """First- and (by default) second-order gradient checks of fn at inputs, in float64;
    on a machine with a GPU, also the same values and gradients there as on the CPU."""
    gradcheck(fn, inputs, atol=atol, rtol=rtol)
    if second_order:
        gradgradcheck(fn, inputs, atol=atol, rtol=rtol)
    if gpu_available():
        check_same_on_gpu(fn, *inputs, second_order=second_order)
    return True


_GPU = None


def gpu_available():
    """True where CuPy imports and sees a CUDA device (and SCRATCHGEN_TEST_GPU is not 0)."""
    global _GPU
    if os.environ.get("SCRATCHGEN_TEST_GPU", "1") == "0":
        return False
    if _GPU is None:
        try:
            import cupy
            _GPU = cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # noqa: BLE001 - no CuPy, driver or device: CPU only
            _GPU = False
    return _GPU


def _outputs_and_vjps(fn, inputs, device, second_order):
    """fn's outputs, its vjp with fixed cotangents, and the gradient of <vjp, w>, as NumPy arrays."""
    xs = [Tensor(backend.to_device(np.asarray(x, dtype=np.float64), device), requires_grad=True)
          if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x for x in inputs]
    leaves = [x for x in xs if isinstance(x, Tensor) and x.requires_grad]
    outs = fn(*xs)
    outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
    rng = np.random.default_rng(0)
    vs = [Tensor(rng.standard_normal(o.shape)).to(device) for o in outs]
    result = [o.detach().numpy() for o in outs]
    live = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
    if not live or not leaves:
        return result
    g1 = grad([o for o, _ in live], leaves, grad_outputs=[v for _, v in live], create_graph=second_order,
              allow_unused=True)
    result += [None if g is None else g.detach().numpy() for g in g1]
    used = [(g, Tensor(rng.standard_normal(g.shape)).to(device)) for g in g1 if g is not None and g.requires_grad]
    if second_order and used:
        inner = sum((g * w).sum() for g, w in used)
        result += [None if g is None else g.detach().numpy() for g in grad(inner, leaves, allow_unused=True)]
    return result


def check_same_on_gpu(fn, *inputs, second_order=True, rtol=1e-9, atol=1e-12):
    """fn's outputs and its first- (and second-) order vector-Jacobian products on CUDA tensors
    equal those on CPU tensors, in float64, up to summation order."""
    cpu = _outputs_and_vjps(fn, inputs, "cpu", second_order)
    gpu = _outputs_and_vjps(fn, inputs, "cuda", second_order)
    assert len(cpu) == len(gpu), f"the CPU gave {len(cpu)} outputs and gradients, the GPU {len(gpu)}"
    for i, (c, g) in enumerate(zip(cpu, gpu)):
        if c is None or g is None:
            assert c is None and g is None, f"result {i}: a gradient on one device only"
            continue
        assert isinstance(g, np.ndarray) and c.shape == g.shape and c.dtype == g.dtype, \
            f"result {i}: CPU {c.dtype}{c.shape}, GPU {getattr(g, 'dtype', type(g))}{getattr(g, 'shape', '')}"
        scale = atol + rtol * max(1.0, float(np.abs(c).max(initial=0.0)))
        np.testing.assert_allclose(g, c, rtol=0, atol=scale, err_msg=f"result {i} differs between CPU and GPU")
    return True


def gradient_test(fn, *domains, min_dims=0, max_dims=3, max_side=3, where=None, second_order=True):
    """A Hypothesis test of fn's first- and second-order gradients on broadcastable inputs.

    `where(*arrays)` may reject draws (for instance ties in max, or points next to a kink).
    """
    @given(broadcastable_arrays(*domains, min_dims=min_dims, max_dims=max_dims, max_side=max_side))
    def test(inputs):
        if where is not None:
            assume(where(*inputs))
        check_gradients(fn, *inputs, second_order=second_order)

    test.__name__ = f"test_gradients_of_{getattr(fn, '__name__', 'fn')}"
    return test
