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
