"""Array manipulation and products beyond the basics: cumulative sums, diagonals, triangles,
rolls, tiles, sorting, einsum and its special cases. Each op is either a primitive with its
backward rule beside it, or a composition of primitives (so its gradient needs no rule)."""
import builtins

import numpy as np

from ..tensor import Tensor, as_tensor, record
from .elementwise import where
from .index import take_along_axis
from .reduce import normalize_axis
from .shape import transpose


# -- cumulative -------------------------------------------------------------------------------------
def cumsum(x, axis=0):
    axis = normalize_axis(axis, x.ndim, "cumsum")[0] if x.ndim else None
    if axis is None:
        return x.reshape(1).cumsum(0).reshape(())
    return record(x.data.cumsum(axis=axis), cumsum_vjp, (x,), axis=axis)


def cumsum_vjp(g, out, x, *, axis):
    # the gradient of a running sum is the running sum of the gradient from the other end
    return (g.flip(axis).cumsum(axis).flip(axis),)


def diff(x, n=1, axis=-1):
    """Differences of neighbours along an axis, n times (np.diff / torch.diff)."""
    from .index import getitem
    axis = axis % x.ndim
    lo = tuple(slice(None) if d != axis else slice(None, -1) for d in range(x.ndim))
    hi = tuple(slice(None) if d != axis else slice(1, None) for d in range(x.ndim))
    for _ in range(n):
        x = getitem(x, hi) - getitem(x, lo)
    return x


def prod(x, axis=None, keepdims=False):
    """The product over axes, by pairwise multiplication (a tree of depth log n): every element's
    gradient is the product of the others, exact with zeros present and to every order."""
    axes = normalize_axis(axis, x.ndim, "prod")
    rest = [d for d in range(x.ndim) if d not in axes]
    y = transpose(x, tuple(rest + list(axes))) if axes else x
    out_shape = tuple(x.shape[d] for d in rest)
    length = int(np.prod([x.shape[d] for d in axes])) if axes else 1
    y = y.reshape(out_shape + (length,))
    from .index import getitem
    from .shape import concatenate
    while y.shape[-1] > 1:
        n = y.shape[-1]
        pairs = getitem(y, (..., slice(0, n - n % 2, 2))) * getitem(y, (..., slice(1, n - n % 2, 2)))
        y = concatenate([pairs, getitem(y, (..., slice(n - 1, n)))], axis=-1) if n % 2 else pairs
    if y.shape[-1] == 0:  # an empty product is 1
        return Tensor(x.xp.ones(out_shape if not keepdims else tuple(
            1 if d in axes else n for d, n in enumerate(x.shape)), dtype=x.dtype))
    y = y.reshape(out_shape)
    if keepdims:
        y = y.reshape(tuple(1 if d in axes else n for d, n in enumerate(x.shape)))
    return y


def cumprod(x, axis=0):
    """Running products along an axis, one multiplication per step (exact with zeros)."""
    from .index import getitem
    from .shape import stack
    axis %= x.ndim
    running, parts = None, []
    for i in range(x.shape[axis]):
        piece = getitem(x, (slice(None),) * axis + (i,))
        running = piece if running is None else running * piece
        parts.append(running)
    return stack(parts, axis=axis) if parts else x * 1


# -- diagonals and triangles ------------------------------------------------------------------------
def diagonal(x, offset=0, axis1=0, axis2=1):
    """The diagonal of the (axis1, axis2) planes, on the last axis (np.diagonal)."""
    return record(x.xp.diagonal(x.data, offset, axis1, axis2).copy(), diagonal_vjp, (x,),
                  offset=offset, axis1=axis1 % x.ndim, axis2=axis2 % x.ndim)


def diagonal_vjp(g, out, x, *, offset, axis1, axis2):
    # scatter back: an identity-pattern mask of the plane, times g broadcast into it
    n1, n2 = x.shape[axis1], x.shape[axis2]
    rows = np.arange(max(0, -offset), max(0, -offset) + out.shape[-1])
    eye = np.zeros((n1, n2, out.shape[-1]), dtype=x.dtype)
    eye[rows, rows + offset, np.arange(out.shape[-1])] = 1
    eye = Tensor(x.xp.asarray(eye))
    plane = (g.unsqueeze(-2).unsqueeze(-2) * eye).sum(axis=-1)   # (..., n1, n2)
    rest = [d for d in range(x.ndim) if d not in (axis1, axis2)]
    order = rest + [axis1, axis2]
    inverse = [order.index(d) for d in range(x.ndim)]
    return (transpose(plane, tuple(inverse)),)


def trace(x, offset=0):
    return diagonal(x, offset).sum(axis=-1)


def diag(x, k=0):
    """A 1-D x: the square matrix with x on diagonal k. A 2-D x: its diagonal k (np.diag)."""
    if x.ndim == 2:
        return diagonal(x, k)
    if x.ndim != 1:
        raise ValueError(f"diag: expected a 1-D or 2-D tensor, got shape {x.shape}")
    n = x.shape[0] + abs(k)
    eye = np.zeros((x.shape[0], n, n), dtype=x.dtype)
    idx = np.arange(x.shape[0])
    eye[idx, idx + max(0, -k), idx + max(0, k)] = 1
    return (x.reshape(-1, 1, 1) * Tensor(x.xp.asarray(eye))).sum(axis=0)


def diag_embed(x):
    """The last axis put on the diagonal of new last two axes (torch.diag_embed)."""
    n = x.shape[-1]
    eye = Tensor(x.xp.eye(n, dtype=x.dtype))
    return x.unsqueeze(-1) * eye


def _triangle(x, k, lower):
    n, m = x.shape[-2:]
    keep = np.tri(n, m, k, dtype=bool) if lower else ~np.tri(n, m, k - 1, dtype=bool)
    return where(x.xp.asarray(keep), x, 0.0)


def tril(x, k=0):
    return _triangle(x, k, lower=True)


def triu(x, k=0):
    return _triangle(x, k, lower=False)


# -- moving and repeating ---------------------------------------------------------------------------
def roll(x, shift, axis=None):
    if axis is None:
        return roll(x.reshape(-1), shift, 0).reshape(x.shape)
    return record(x.xp.roll(x.data, shift, axis), roll_vjp, (x,), shift=shift, axis=axis)


def roll_vjp(g, out, x, *, shift, axis):
    back = tuple(-s for s in shift) if isinstance(shift, (tuple, list)) else -shift
    return (roll(g, back, axis),)


def moveaxis(x, source, destination):
    source, destination = source % x.ndim, destination % x.ndim
    order = [d for d in range(x.ndim) if d != source]
    order.insert(destination, source)
    return transpose(x, tuple(order))


def rot90(x, k=1, axes=(0, 1)):
    """Rotate by 90 degrees k times in the plane of `axes` (np.rot90): flips and a transpose."""
    k %= 4
    a, b = axes
    if k == 0:
        return x
    if k == 2:
        return x.flip(a).flip(b)
    swap = list(range(x.ndim))
    swap[a], swap[b] = swap[b], swap[a]
    return transpose(x.flip(b), tuple(swap)) if k == 1 else transpose(x, tuple(swap)).flip(b)


def tile(x, reps):
    """np.tile: copies of x laid side by side; the gradient sums the copies."""
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    if len(reps) < x.ndim:
        reps = (1,) * (x.ndim - len(reps)) + reps
    x = x.reshape((1,) * (len(reps) - x.ndim) + x.shape)
    expanded = []
    for r, n in zip(reps, x.shape):
        expanded += [r, n]
    grown = x.reshape(tuple(v for n in x.shape for v in (1, n))).broadcast_to(tuple(expanded))
    return grown.reshape(tuple(r * n for r, n in zip(reps, x.shape)))


def repeat_interleave(x, repeats, axis=None):
    """Each element repeated `repeats` times along axis (torch.repeat_interleave / np.repeat)."""
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis %= x.ndim
    shape = x.shape
    y = x.unsqueeze(axis + 1)
    y = y.broadcast_to(shape[:axis + 1] + (repeats,) + shape[axis + 1:])
    return y.reshape(shape[:axis] + (shape[axis] * repeats,) + shape[axis + 1:])


def vstack(tensors):
    from .shape import concatenate
    return concatenate([t if t.ndim >= 2 else t.reshape(1, -1) for t in tensors], axis=0)


def hstack(tensors):
    from .shape import concatenate
    return concatenate(tensors, axis=0 if tensors[0].ndim == 1 else 1)


def chunk(x, chunks, axis=0):
    """torch.chunk: `chunks` nearly equal parts (the last may be smaller)."""
    from .shape import split
    n = x.shape[axis]
    size = -(-n // chunks)
    return split(x, [min(size, n - start) for start in range(0, n, size)], axis)


def unbind(x, axis=0):
    """The slices along an axis, that axis removed (torch.unbind)."""
    from .index import getitem
    return tuple(getitem(x, (slice(None),) * (axis % x.ndim) + (i,)) for i in range(x.shape[axis]))


def tensor_split(x, sections, axis=0):
    """np.array_split / torch.tensor_split: `sections` parts as equal as possible (the first ones
    one longer), or the parts between the given indices."""
    from .shape import split
    n = x.shape[axis]
    if isinstance(sections, int):
        base, extra = divmod(n, sections)
        sizes = [base + (i < extra) for i in range(sections)]
    else:
        edges = [0] + [min(max(int(i), 0), n) for i in sections] + [n]
        sizes = [max(0, b - a) for a, b in zip(edges[:-1], edges[1:])]
    return split(x, sizes, axis)


# -- sorting ----------------------------------------------------------------------------------------
def sort(x, axis=-1, descending=False):
    """(values, indices): the gradient flows to the elements where they came from."""
    idx = x.xp.argsort(x.data, axis=axis, kind="stable")
    if descending:
        idx = x.xp.flip(idx, axis=axis)
    return take_along_axis(x, idx, axis), Tensor(idx)


# -- products ---------------------------------------------------------------------------------------
def einsum(subscripts, *operands_):
    """np.einsum with explicit output (`'ij,jk->ik'`); the gradient of each operand is another
    einsum, of the upstream gradient with the other operands."""
    if "->" not in subscripts:
        raise ValueError("einsum: give the output explicitly, e.g. 'ij,jk->ik'")
    if "..." in subscripts:
        raise ValueError("einsum: ellipses are not supported; name every axis")
    ops = [as_tensor(t) for t in operands_]
    inputs, output = subscripts.replace(" ", "").split("->")
    specs = inputs.split(",")
    if builtins.any(len(set(spec)) != len(spec) for spec in specs):
        raise ValueError("einsum: a letter repeated within one operand (a diagonal) is not supported; "
                         "use sg.diagonal")
    if len(specs) != len(ops):
        raise ValueError(f"einsum: {len(specs)} operand specs for {len(ops)} operands")
    data = np.einsum(subscripts, *[t.data for t in ops]) if ops[0].xp is np else \
        ops[0].xp.einsum(subscripts, *[t.data for t in ops])
    return record(ops[0].xp.asarray(data), einsum_vjp, tuple(ops), specs=tuple(specs), output=output)


def einsum_vjp(g, out, *ops, specs, output):
    grads = []
    for i, (t, spec) in enumerate(zip(ops, specs)):
        if not t._requires_grad:
            grads.append(None)
            continue
        others = [o for j, o in enumerate(ops) if j != i]
        other_specs = [s for j, s in enumerate(specs) if j != i]
        present = set(output) | set("".join(other_specs))
        kept = "".join(c for c in spec if c in present)
        grad = einsum(",".join([output] + other_specs) + "->" + kept, g, *others)
        if len(kept) != len(spec):  # letters only t had were summed away: broadcast back over them
            view = tuple(n if c in present else 1 for n, c in zip(t.shape, spec))
            grad = grad.reshape(view).broadcast_to(t.shape)
        grads.append(grad)
    return tuple(grads)


def outer(x, y):
    return x.reshape(-1, 1) * y.reshape(1, -1)


def inner(x, y):
    """Sum of products over the last axes (np.inner): shape x.shape[:-1] + y.shape[:-1]."""
    return tensordot(x, y, ([-1], [-1]))


def dot(x, y):
    """torch.dot: the inner product of two 1-D tensors."""
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"dot: expected two 1-D tensors, got shapes {x.shape} and {y.shape}")
    return (x * y).sum()


def tensordot(x, y, axes=2):
    """np.tensordot, as an einsum."""
    if isinstance(axes, int):
        axes = (list(range(x.ndim - axes, x.ndim)), list(range(axes)))
    ax, ay = ([a % x.ndim for a in np.atleast_1d(axes[0])], [a % y.ndim for a in np.atleast_1d(axes[1])])
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    sx = [next(letters) for _ in range(x.ndim)]
    sy = [next(letters) for _ in range(y.ndim)]
    for i, j in zip(ax, ay):
        sy[j] = sx[i]
    out = [c for d, c in enumerate(sx) if d not in ax] + [c for d, c in enumerate(sy) if d not in ay]
    return einsum(f"{''.join(sx)},{''.join(sy)}->{''.join(out)}", x, y)


def kron(x, y):
    """The Kronecker product of two tensors of the same number of axes."""
    if x.ndim != y.ndim:
        raise ValueError(f"kron: tensors need the same number of axes, got {x.ndim} and {y.ndim}")
    xs = x.reshape(tuple(v for n in x.shape for v in (n, 1)))
    ys = y.reshape(tuple(v for n in y.shape for v in (1, n)))
    return (xs * ys).reshape(tuple(a * b for a, b in zip(x.shape, y.shape)))


# -- truth and spacing ------------------------------------------------------------------------------
def any(x, axis=None, keepdims=False):
    return Tensor(x.data.any(axis=axis, keepdims=keepdims))


def all(x, axis=None, keepdims=False):
    return Tensor(x.data.all(axis=axis, keepdims=keepdims))


def linspace(start, stop, num, dtype=None):
    from ..tensor import float32
    return Tensor(np.linspace(start, stop, num, dtype=dtype or float32))


def clamp(x, min=None, max=None):
    """clip with number or tensor bounds; where a bound binds, the gradient goes to the bound."""
    from .elementwise import clip, maximum, minimum
    if min is not None:
        x = maximum(x, min) if isinstance(min, Tensor) else clip(x, min, None)
    if max is not None:
        x = minimum(x, max) if isinstance(max, Tensor) else clip(x, None, max)
    return x


__all__ = ["prod", "cumprod", "cumsum", "diff", "diagonal", "trace", "diag", "diag_embed", "tril", "triu", "roll", "moveaxis",
           "rot90", "tile", "repeat_interleave", "vstack", "hstack", "chunk", "unbind", "tensor_split", "sort", "einsum", "outer",
           "inner", "dot", "tensordot", "kron", "any", "all", "linspace"]
