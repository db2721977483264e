"""Ops that move elements around without changing them. Each vjp moves the gradient back."""
from .. import backend
from ..tensor import as_tensor, record
from .elementwise import unbroadcast
from .reduce import normalize_axis


def reshape(x, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if tuple(shape) == x.shape:
        return x
    try:
        data = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot view shape {x.shape} ({x.size} elements) as {tuple(shape)}") from None
    return record(data, reshape_vjp, (x,))


def reshape_vjp(g, out, x):
    return (g.reshape(x.shape),)


def transpose(x, *axes):
    """Reverse the axes, or permute them as given (also available as `permute`)."""
    axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    axes = tuple(a % x.ndim for a in axes) if axes else tuple(reversed(range(x.ndim)))
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: {axes} is not a permutation of the {x.ndim} axes of shape {x.shape}")
    return record(x.data.transpose(axes), transpose_vjp, (x,), axes=axes)


def transpose_vjp(g, out, x, *, axes):
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return (g.transpose(tuple(inverse)),)


permute = transpose


def swapaxes(x, a, b):
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


def broadcast_to(x, shape):
    shape = tuple(shape)
    if x.shape == shape:
        return x
    try:
        data = x.xp.broadcast_to(x.data, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: shape {x.shape} cannot be broadcast to {shape}") from None
    return record(data, broadcast_to_vjp, (x,))


def broadcast_to_vjp(g, out, x):
    return (unbroadcast(g, x.shape),)


def squeeze(x, axis=None):
    if axis is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        axes = normalize_axis(axis, x.ndim, "squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} of shape {x.shape} has size {x.shape[a]}, not 1")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


def unsqueeze(x, axis):
    axis = axis % (x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = start_dim % x.ndim, end_dim % x.ndim
    n = 1
    for s in x.shape[start:end + 1]:
        n *= s
    return reshape(x, x.shape[:start] + (n,) + x.shape[end + 1:])


def concatenate(tensors, axis=0):
    xs = tuple(as_tensor(t) for t in tensors)
    try:
        data = xs[0].xp.concatenate([t.data for t in xs], axis=axis)
    except ValueError:
        raise ValueError(f"concatenate: shapes {[t.shape for t in xs]} differ off axis {axis}") from None
    return record(data, concatenate_vjp, xs, axis=axis)


def concatenate_vjp(g, out, *xs, axis):
    grads, start = [], 0
    for x in xs:
        n = x.shape[axis]
        index = [slice(None)] * g.ndim
        index[axis] = slice(start, start + n)
        grads.append(g[tuple(index)] if x._requires_grad else None)
        start += n
    return grads


cat = concatenate


def stack(tensors, axis=0):
    xs = [as_tensor(t) for t in tensors]
    shapes = {t.shape for t in xs}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors need one shape, got {[t.shape for t in xs]}")
    return concatenate([unsqueeze(t, axis) for t in xs], axis=axis)


def split(x, sections, axis=0):
    """Split into equal `sections` (an int) or at the given sizes (a list), like torch.split
    when given sizes and numpy.split when given a count."""
    n = x.shape[axis]
    if isinstance(sections, int):
        if n % sections:
            raise ValueError(f"split: axis {axis} of shape {x.shape} does not divide into {sections} parts")
        sizes = [n // sections] * sections
    else:
        sizes = list(sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n}, the length of axis {axis}")
    pieces, start = [], 0
    for s in sizes:
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + s)
        pieces.append(x[tuple(index)])
        start += s
    return pieces


def pad(x, pad_width, value=0.0):
    """Constant padding; pad_width as in numpy.pad: ((before, after), ...) per axis."""
    pad_width = tuple(tuple(p) for p in pad_width)
    if len(pad_width) != x.ndim:
        raise ValueError(f"pad: need one (before, after) pair per axis of shape {x.shape}, got {pad_width}")
    return record(x.xp.pad(x.data, pad_width, constant_values=value), pad_vjp, (x,), pad_width=pad_width)


def pad_vjp(g, out, x, *, pad_width):
    return (g[tuple(slice(b, b + n) for (b, _), n in zip(pad_width, x.shape))],)


def flip(x, axis=None):
    axes = normalize_axis(axis, x.ndim, "flip")
    return record(x.xp.flip(x.data, axis=axes), flip_vjp, (x,), axes=axes)


def flip_vjp(g, out, x, *, axes):
    return (flip(g, axes),)


def to_device(x, device):
    data = backend.to_device(x.data, device)
    if data is x.data:
        return x
    return record(data, to_device_vjp, (x,))


def to_device_vjp(g, out, x):
    return (to_device(g, x.device),)
