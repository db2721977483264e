"""Hypothesis strategies and a one-line gradient property check, for our tests and yours.

    from scratchgen.testing import gradient_test
    test_log = gradient_test(sg.log, "positive")            # unary, any shape
    test_mul = gradient_test(lambda x, y: x * y, "real", "real")  # broadcast shapes

Each generated test draws float64 arrays with mutually broadcastable shapes (0-d and
size-1 axes included), elements from safe domains, and runs first- and second-order
gradient checks. Needs the `dev` extra (hypothesis).
"""
import numpy as np
from hypothesis import assume, given, strategies as st
from hypothesis.extra import numpy as hnp

from .gradcheck import gradcheck, gradgradcheck

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


def arrays(shape, domain="real"):
    return hnp.arrays(np.float64, shape, elements=elements(domain))


@st.composite
def broadcastable_arrays(draw, *domains, min_dims=0, max_dims=3, min_side=1, max_side=3):
    """One array per domain, with mutually broadcastable shapes (0-d and size-1 axes included)."""
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=len(domains), min_dims=min_dims,
                                                    max_dims=max_dims, min_side=min_side, max_side=max_side))
    return tuple(draw(arrays(s, d)) for s, d in zip(shapes.input_shapes, domains))


def check_gradients(fn, *inputs, atol=1e-5, rtol=1e-3, second_order=True):
    """First- and (by default) second-order gradient checks of fn at inputs, in float64."""
    gradcheck(fn, inputs, atol=atol, rtol=rtol)
    if second_order:
        gradgradcheck(fn, inputs, atol=atol, rtol=rtol)
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
