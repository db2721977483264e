"""The checkers must catch wrong rules: a check that cannot fail proves nothing."""
import numpy as np
import pytest
from hypothesis import given

import scratchgen as sg
from scratchgen.tensor import Tensor, record
from scratchgen.testing import broadcastable_arrays, gradient_test


def square_with_wrong_first_order(x):
    return record(x.data ** 2, lambda g, out, x: (g * x * 3,), (x,))


def square_with_detached_rule(x):
    # Right first derivative, but built from a constant: its own derivative is lost.
    return record(x.data ** 2, lambda g, out, x: (g * Tensor(2 * x.data),), (x,))


def test_gradcheck_names_input_index_and_values():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(sg.GradcheckError, match=r"input 0 \(shape \(2, 2\)\) at index \(0, 0\): analytic .* numeric"):
        sg.gradcheck(square_with_wrong_first_order, [x])


def test_gradgradcheck_catches_a_rule_that_is_not_differentiable():
    x = np.array([1.0, -2.0, 0.5])
    assert sg.gradcheck(square_with_detached_rule, [x])
    with pytest.raises(sg.GradcheckError):
        sg.gradgradcheck(square_with_detached_rule, [x])


def test_gradient_test_factory_fails_on_a_wrong_op():
    with pytest.raises(sg.GradcheckError):
        gradient_test(square_with_wrong_first_order, "real")()


def test_gradcheck_ignores_integer_inputs_and_handles_multiple_outputs():
    labels = np.array([1, 0])
    assert sg.gradcheck(lambda z, y: sg.cross_entropy(z, y), [np.random.rand(2, 3), labels])
    assert sg.gradcheck(lambda z: sg.split(z, 2, axis=1), [np.random.rand(2, 4)])


@given(broadcastable_arrays("positive", "unit", "nonzero", "real"))
def test_strategies_respect_domains_and_broadcast(arrays):
    p, u, nz, r = arrays
    np.broadcast_shapes(p.shape, u.shape, nz.shape, r.shape)
    assert np.all(p >= 0.2) and np.all((u > 0) & (u < 1)) and np.all(np.abs(nz) >= 0.2)
    assert all(a.dtype == np.float64 for a in arrays)
