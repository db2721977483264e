"""Indexing and its adjoint. x[index] sends its gradient back by scatter-add, which sums
over repeated indices; scatter-add's own gradient is indexing again, so the pair closes
under differentiation."""
from .. import backend
from ..tensor import Tensor, record


def _plain(index):
    """Index with Tensors replaced by their arrays."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def _may_repeat(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "dtype") and i.dtype.kind in "iu" or isinstance(i, list) for i in parts)


def getitem(x, index):
    index = _plain(index)
    try:
        data = x.data[index]
    except IndexError as e:
        raise IndexError(f"index {index!r} is invalid for shape {x.shape}: {e}") from None
    return record(data, getitem_vjp, (x,), index=index)


def getitem_vjp(g, out, x, *, index):
    return (scatter_add(g, index, x.shape),)


def scatter_add(values, index, shape):
    """zeros(shape) with `values` added at `index` (repeated indices accumulate)."""
    target = values.xp.zeros(shape, dtype=values.data.dtype)
    if _may_repeat(index):
        backend.scatter_add(target, index, values.data)
    else:
        target[index] = values.data
    return record(target, scatter_add_vjp, (values,), index=index)


def scatter_add_vjp(g, out, values, *, index):
    return (getitem(g, index),)


def take_along_axis(x, indices, axis):
    """out[..., i, ...] = x[..., indices[..., i, ...], ...] along `axis` (torch.gather)."""
    xp = x.xp
    idx = indices.data if isinstance(indices, Tensor) else xp.asarray(indices)
    if idx.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices of shape {idx.shape} need as many dims as x {x.shape}")
    axis = axis % x.ndim
    grids = xp.ogrid[tuple(slice(n) for n in idx.shape)]
    full = tuple(idx if d == axis else grids[d] for d in range(x.ndim))
    return getitem(x, full)


gather = take_along_axis


def setitem(x, index, value):
    """`x[index] = value`, as PyTorch does it: outside the graph, a versioned in-place write;
    inside it, x becomes the output of an op of its old self and value, so gradients flow to
    both (zero to x's overwritten elements, the selected elements' gradient to value). A graph
    that used x before the write refuses to backward through it (the version clock)."""
    from ..grad_mode import _GradMode
    from ..tensor import Versions, as_tensor, mark_written
    index = _plain(index)
    value = as_tensor(value, like=x)
    tracked = _GradMode.enabled and (x._requires_grad or value._requires_grad)
    if not tracked:
        x.data[index] = value.data
        mark_written([x])
        return
    if x._requires_grad and x._vjp is None:
        raise RuntimeError("a leaf tensor that requires grad cannot be written in place (x[i] = v); "
                           "write to a copy (y = x * 1), or under sg.no_grad()")
    old = Tensor.__new__(Tensor)  # x as it was: the new op's first input
    old.data, old.grad, old._vjp, old._inputs, old._args = x.data, None, x._vjp, x._inputs, x._args
    old._requires_grad, old._born = x._requires_grad, x._born
    _point_to(value, x, old)  # value may be computed from x (y[0] = y[3] ** 2): from x as it was
    data = x.data.copy()
    data[index] = value.data
    Versions.writes += 1
    x.data, x._vjp, x._inputs, x._args = data, setitem_vjp, (old, value), {"index": index}
    x._requires_grad, x._born, x._written = True, Versions.writes, Versions.writes


def setitem_vjp(g, out, old, value, *, index):
    keep = g.xp.ones(g.shape, dtype=bool)
    keep[index] = False
    from .elementwise import unbroadcast, where
    g_old = where(keep, g, 0.0) if old._requires_grad else None
    g_value = unbroadcast(getitem(g, index), value.shape) if value._requires_grad else None
    return g_old, g_value


def _point_to(root, x, old):
    """Make every node of root's graph that reads x read `old` instead."""
    seen, stack = set(), [root]
    while stack:
        t = stack.pop()
        if id(t) in seen or t is x:
            continue
        seen.add(id(t))
        if any(i is x for i in t._inputs):
            t._inputs = tuple(old if i is x else i for i in t._inputs)
        stack.extend(t._inputs)
