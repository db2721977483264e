"""The stable functions give finite, correct values and gradients up to |x| = 1e4."""
import numpy as np
import pytest

import scratchgen as sg

EXTREMES = np.array([-1e4, -1e3, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e3, 1e4])


def value_and_grad(fn, x, dtype):
    t = sg.tensor(x.astype(dtype), requires_grad=True)
    out = fn(t)
    out.sum().backward()
    assert np.all(np.isfinite(out.numpy() if not out.requires_grad else out.detach().numpy()))
    assert np.all(np.isfinite(t.grad.numpy()))
    assert out.dtype == dtype and t.grad.dtype == dtype
    return out.detach().numpy().astype(np.float64), t.grad.numpy().astype(np.float64)


def reference_sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_extremes(dtype):
    value, grad = value_and_grad(sg.softplus, EXTREMES, dtype)
    np.testing.assert_allclose(value, np.logaddexp(0, EXTREMES), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(grad, reference_sigmoid(EXTREMES), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsigmoid_extremes(dtype):
    value, grad = value_and_grad(sg.logsigmoid, EXTREMES, dtype)
    np.testing.assert_allclose(value, -np.logaddexp(0, -EXTREMES), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(grad, reference_sigmoid(-EXTREMES), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_extremes(dtype):
    value, grad = value_and_grad(sg.sigmoid, EXTREMES, dtype)
    np.testing.assert_allclose(value, reference_sigmoid(EXTREMES), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(grad, reference_sigmoid(EXTREMES) * reference_sigmoid(-EXTREMES),
                               rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_and_log_softmax_extremes(dtype):
    x = np.stack([EXTREMES, -EXTREMES, np.full_like(EXTREMES, 1e4)])
    value, grad = value_and_grad(lambda t: t.logsumexp(axis=1), x, dtype)
    m = x.max(axis=1)
    expected = m + np.log(np.exp(x - m[:, None]).sum(axis=1))
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    softmax = np.exp(x - expected[:, None])
    np.testing.assert_allclose(grad, softmax, rtol=1e-5, atol=1e-30)

    value, grad = value_and_grad(lambda t: sg.log_softmax(t, axis=1), x, dtype)
    np.testing.assert_allclose(value, x - expected[:, None], rtol=1e-6)
    # d/dx sum(log_softmax) = 1 - C * softmax
    np.testing.assert_allclose(grad, 1 - x.shape[1] * softmax, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_extremes(dtype):
    for y in (0.0, 1.0, 0.3):
        target = np.full_like(EXTREMES, y)
        value, grad = value_and_grad(
            lambda t: sg.binary_cross_entropy_with_logits(t, sg.tensor(target.astype(dtype)), reduction="none"),
            EXTREMES, dtype)
        expected = np.logaddexp(0, EXTREMES) - EXTREMES * y
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad, reference_sigmoid(EXTREMES) - y, rtol=1e-6, atol=1e-7)


def test_logsumexp_of_all_negative_infinity_is_negative_infinity():
    x = sg.tensor(np.full((2, 3), -np.inf))
    assert np.all(x.logsumexp(axis=1).numpy() == -np.inf)
