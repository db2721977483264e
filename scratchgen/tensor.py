"""The Tensor: an array, plus what is needed to differentiate it.

A tensor made by an op while grad mode is on, from an input that requires grad, keeps
three things: the op's `_vjp` rule, the `_inputs` it was made from, and any non-tensor
`_args` (an axis, an exponent). `autograd.py` walks these links backwards.
Ops never modify a tensor in place, so saved inputs cannot go stale; the only in-place
writes are optimizers updating `param.data` between steps, outside the graph.
"""
import numpy as np

from . import backend
from . import anomaly as _anomaly
from .grad_mode import _GradMode

float32, float64, int64, int32, bool_ = np.float32, np.float64, np.int64, np.int32, np.bool_
_NO_ARGS = {}
_new = object.__new__


class Tensor:
    __slots__ = ("data", "_requires_grad", "grad", "_vjp", "_inputs", "_args", "_born", "_written",
                 "__weakref__", "__dict__")
    __array_ufunc__ = None  # make `ndarray + Tensor` call Tensor.__radd__
    __hash__ = object.__hash__  # == is elementwise, identity stays hashable

    def __init__(self, data, requires_grad=False):
        if isinstance(data, np.generic):
            data = np.asarray(data)
        self.data = data
        self.grad = None
        self._vjp = None
        self._inputs = ()
        self._args = _NO_ARGS
        self._born = self._written = Versions.writes
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True

    # -- autograd state ----------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.data.dtype}; "
                            f"convert first with .float() or .double()")
        if not flag and self._vjp is not None:
            raise RuntimeError("requires_grad can only be switched off on a leaf; use .detach()")
        self._requires_grad = bool(flag)

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self):
        return self._vjp is None

    @property
    def grad_fn(self):
        """The backward rule that made this tensor (None for leaves)."""
        return self._vjp

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        from .autograd import backward
        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)

    def detach(self):
        return Tensor(self.data)

    # -- array views -------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: _Size(self.data.size, self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    device = property(lambda self: backend.device_of(self.data))
    xp = property(lambda self: np if self.data.__class__ is np.ndarray else backend.array_module(self.data))

    def numpy(self):
        if self._requires_grad:
            raise RuntimeError("call .detach().numpy() on a tensor that requires grad")
        return backend.to_device(self.data, "cpu")

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return backend.to_device(self.data, "cpu").tolist()

    def numel(self):
        return self.data.size

    def to(self, target):
        """A device ('cpu', 'cuda') moves the tensor; a dtype (sg.float64) casts it, as in PyTorch."""
        if isinstance(target, str) and target.split(":")[0] in ("cpu", "cuda"):
            from .ops.shape import to_device
            return to_device(self, target)
        try:
            dtype = np.dtype(target)
        except TypeError:
            raise TypeError(f"to(): expected a device ('cpu', 'cuda') or a dtype, got {target!r}") from None
        return self if dtype == self.data.dtype else self.astype(dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    # -- in-place writes, as torch's `with no_grad(): w.mul_(0.5)`: outside the graph, and stamped
    # by the version clock so that a graph that saved this tensor refuses to use the new values
    def _write(self, name, values):
        if self._requires_grad and _GradMode.enabled:
            raise RuntimeError(f"{name}: a tensor that requires grad can be changed in place only "
                               f"under sg.no_grad() (as in PyTorch); outside it the change would "
                               f"bypass autograd")
        if self._vjp is not None:
            raise RuntimeError(f"{name}: only leaf tensors can be changed in place; this one was made "
                               f"by {self._vjp.__name__}")
        xp = self.xp
        self.data[...] = xp.asarray(getattr(values, "data", values), dtype=self.data.dtype)
        mark_written([self])
        return self

    def copy_(self, src):
        return self._write("copy_", src)

    def fill_(self, value):
        return self._write("fill_", value)

    def zero_(self):
        return self._write("zero_", 0)

    def add_(self, other, alpha=1):
        return self._write("add_", self.data + alpha * getattr(other, "data", other))

    def mul_(self, other):
        return self._write("mul_", self.data * getattr(other, "data", other))

    def float(self):
        return self.astype(float32)

    def double(self):
        return self.astype(float64)

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __repr__(self):
        body = np.array2string(backend.to_device(self.data, "cpu"), separator=", ", precision=4,
                               prefix="tensor(")
        extras = []
        if self.data.dtype not in (np.float32, np.int64, np.bool_):
            extras.append(f"dtype={self.data.dtype}")
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self._vjp is not None:
            extras.append(f"grad_fn=<{self._vjp.__name__}>")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"


class _Size(int):
    """`x.size` is NumPy's element count (an int), and, called, PyTorch's size: `x.size()` is the
    shape, `x.size(d)` the length of axis d."""

    def __new__(cls, n, shape):
        self = super().__new__(cls, n)
        self.shape = shape
        return self

    def __call__(self, dim=None):
        return self.shape if dim is None else self.shape[dim]


class Versions:
    """A clock of in-place writes to tensors (an optimizer step, a loaded state_dict): every op
    notes the time it was recorded (`_born`), every write stamps the tensors it changed
    (`_written`). The backward walk refuses a rule whose leaf input was written after the op was
    recorded: its saved values are stale, and the gradient would be silently wrong (PyTorch's
    version counter). Writes through `.data` bypass it, as `.data` does in PyTorch."""
    writes = 0


def mark_written(tensors):
    """Record that `tensors` were modified in place (their values changed under any graph)."""
    Versions.writes += 1
    for t in tensors:
        t._written = Versions.writes


def record(data, vjp, inputs, **args):
    """Wrap an op's output array; keep its backward rule only if a gradient can flow through it.

    `vjp(g, out, *inputs, **args)` returns one gradient (or None) per input, built from
    Tensor ops, so the same rule gives higher-order gradients when the graph is kept.
    """
    if data.__class__ is not np.ndarray and isinstance(data, np.generic):
        data = np.asarray(data)
    out = _new(Tensor)  # skip __init__'s checks: an op's output is already a valid array
    out.data, out.grad, out._vjp, out._inputs, out._args, out._requires_grad = data, None, None, (), _NO_ARGS, False
    out._born = Versions.writes
    if _GradMode.enabled:
        for x in inputs:
            if x._requires_grad:
                out._requires_grad = True
                out._vjp = vjp
                out._inputs = inputs
                if args:
                    out._args = args
                break
    if _anomaly.enabled:
        _anomaly.check_forward(out, vjp, inputs)
    return out


_constants = {}


def as_tensor(x, like=None):
    """Tensor for an op's operand. Python numbers take the dtype of the tensor they meet."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float, bool)):
        dtype = like.data.dtype if like.data.dtype.kind == "f" else _default_dtype(x)
        # Constants are never written to, so one tensor per (value, dtype, device) serves all uses.
        key = (x.__class__, x, dtype, like.data.__class__)
        const = _constants.get(key)
        if const is None:
            if len(_constants) > 4096:
                _constants.clear()
            const = _constants[key] = Tensor(like.xp.asarray(x, dtype=dtype))
        return const
    return Tensor(_to_array(x, None))


def _default_dtype(x):
    return float32 if isinstance(x, float) else None


def _to_array(data, dtype, device=None):
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        arr = (backend.array_module(data) if not isinstance(data, (list, tuple, int, float, bool))
               else np).array(data, dtype=dtype)
    elif isinstance(data, (np.ndarray, np.generic)) or not isinstance(data, (list, tuple, int, float, bool)):
        arr = backend.array_module(data).array(data)  # arrays keep their dtype
    else:
        arr = np.array(data)
        if arr.dtype == np.float64:  # Python floats default to float32, as in PyTorch
            arr = arr.astype(float32)
    if device is not None:
        arr = backend.to_device(arr, device)
    return arr


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new leaf tensor holding a copy of `data` (a list, a number, an array or a Tensor).

    Dtype rule: Python floats become float32; NumPy arrays keep their dtype (float64 stays
    float64); Python ints become int64.
    """
    return Tensor(_to_array(data, dtype, device), requires_grad=requires_grad)
