"""Check analytic gradients against central finite differences, in float64.

For a random cotangent v (one per output), the analytic vector-Jacobian product
v^T J from the engine is compared, element by element of every input, with the
numeric derivative of <f(x), v>. A wrong Jacobian entry changes v^T J for almost
every v, so one random v is a complete check at a fraction of the cost of the full
Jacobian.
"""
import numpy as np

from .autograd import grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    pass


def _outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _prepare(inputs):
    """Float inputs become float64 leaves that require grad; others pass through unchanged."""
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    prepared, checked = [], []
    for i, x in enumerate(inputs):
        arr = x.data if isinstance(x, Tensor) else np.asarray(x) if isinstance(x, (np.ndarray, list, float)) else None
        if arr is not None and arr.dtype.kind == "f":
            prepared.append(Tensor(np.array(arr, dtype=np.float64), requires_grad=True))
            checked.append(i)
        else:
            prepared.append(x)
    return prepared, checked


def _vjp(fn, xs, checked, cotangents, create_graph):
    outs = _outputs(fn(*xs))
    live = [(o, v) for o, v in zip(outs, cotangents) if o.requires_grad]
    targets = [xs[i] for i in checked]
    if not live:
        return [None] * len(targets)
    return list(grad([o for o, _ in live], targets, grad_outputs=[v for _, v in live],
                     create_graph=create_graph, allow_unused=True))


def _numeric(fn, xs, i, cotangents, eps):
    x = xs[i].data
    num = np.zeros_like(x)
    flat, out = x.reshape(-1), num.reshape(-1)

    def f():
        return sum(float((o.data * v.data).sum()) for o, v in zip(_outputs(fn(*xs)), cotangents))

    # Grad mode stays on: fn may itself differentiate (as in gradgradcheck).
    for j in range(flat.size):
        orig = flat[j]
        flat[j] = orig + eps
        plus = f()
        flat[j] = orig - eps
        minus = f()
        flat[j] = orig
        out[j] = (plus - minus) / (2 * eps)
    return num


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """True if fn's gradients match finite differences; otherwise raise GradcheckError naming
    the input, the element index, and the analytic and numeric values."""
    xs, checked = _prepare(inputs)
    rng = np.random.default_rng(seed)
    outs = _outputs(fn(*xs))
    cotangents = [Tensor(rng.standard_normal(o.shape)) for o in outs]
    analytic = _vjp(fn, xs, checked, cotangents, create_graph=False)
    for i, a in zip(checked, analytic):
        a = np.zeros(xs[i].shape) if a is None else np.asarray(a.data, dtype=np.float64)
        if a.shape != xs[i].shape:
            raise GradcheckError(f"input {i}: gradient shape {a.shape} differs from the input's {xs[i].shape}")
        n = _numeric(fn, xs, i, cotangents, eps)
        bad = ~(np.abs(a - n) <= atol + rtol * np.abs(n))
        if bad.any():
            j = np.unravel_index(np.argmax(bad), a.shape) if a.ndim else ()
            raise GradcheckError(f"gradient mismatch for input {i} (shape {a.shape}) at index {tuple(map(int, j))}: "
                                 f"analytic {float(a[j]):.8g}, numeric {float(n[j]):.8g} ({int(bad.sum())} of {a.size} elements differ)")
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check second-order gradients: gradcheck the map (x, v) -> v^T J(x), built with create_graph=True."""
    xs, checked = _prepare(inputs)
    rng = np.random.default_rng(seed + 1)
    outs = _outputs(fn(*xs))
    vs = [Tensor(rng.standard_normal(o.shape)) for o in outs]
    n_in = len(xs)

    def first_order(*args):
        inner, cot = list(args[:n_in]), args[n_in:]
        grads = _vjp(fn, inner, checked, cot, create_graph=True)
        return [g if g is not None else Tensor(np.zeros(inner[i].shape)) for g, i in zip(grads, checked)]

    return gradcheck(first_order, xs + vs, eps=eps, atol=atol, rtol=rtol, seed=seed + 2)
