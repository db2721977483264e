"""PyTorch's spellings of scratchgen's operations, where they do not conflict with NumPy's.

The ops take NumPy's names (`axis=`, `keepdims=`); a PyTorch user writes `dim=` and `keepdim=`.
`accept_dim(fn)` wraps an op so that both work, and is applied to every op that reduces or
selects along an axis. Two reductions differ in PyTorch beyond the name:

- `x.max(dim=d)` / `x.min(dim=d)` return `(values, indices)` as in PyTorch (`x.max(axis=d)` is
  NumPy's and PyTorch's `amax`: the values only);
- `x.var(dim=d)` / `x.std(dim=d)` use PyTorch's default `correction=1` (the unbiased estimate),
  `axis=` keeps NumPy's `correction=0`; `unbiased=True/False` is accepted too.

`docs/pytorch_names.md` is generated from TABLE by `python -m scratchgen.torch_names`, and a
test checks that it is current and that every name in it exists.
"""
import collections
import functools

ReturnTypes = collections.namedtuple("ReturnTypes", ["values", "indices"])


def accept_dim(fn, axis_name="axis", torch_defaults=None):
    """fn, also callable with PyTorch's `dim=` (for `axis_name`) and `keepdim=` (for keepdims)."""
    torch_defaults = torch_defaults or {}

    @functools.wraps(fn)
    def wrapper(*args, dim=None, keepdim=None, **kwargs):
        if dim is not None:
            if axis_name in kwargs:
                raise TypeError(f"{fn.__name__}: give dim= or {axis_name}=, not both")
            kwargs[axis_name] = dim
            for k, v in torch_defaults.items():
                kwargs.setdefault(k, v)
        if keepdim is not None:
            if "keepdims" in kwargs:
                raise TypeError(f"{fn.__name__}: give keepdim= or keepdims=, not both")
            kwargs["keepdims"] = keepdim
        return fn(*args, **kwargs)

    wrapper.__wrapped__ = fn
    return wrapper


def _correction(kwargs):
    if "unbiased" in kwargs:
        kwargs["correction"] = 1 if kwargs.pop("unbiased") else 0


def variance(fn):
    """var/std: PyTorch's unbiased default when called the PyTorch way (dim=, or unbiased=)."""
    inner = accept_dim(fn, torch_defaults={"correction": 1})

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _correction(kwargs)
        return inner(*args, **kwargs)
    return wrapper


def extreme(fn, arg):
    """max/min: `dim=` returns (values, indices) as torch.max(x, dim) does; `axis=` the values."""
    @functools.wraps(fn)
    def wrapper(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        if dim is None:
            return fn(x, axis, keepdims if keepdim is None else keepdim)
        keep = bool(keepdim)
        values = fn(x, dim, keep)
        from .tensor import Tensor
        idx = arg(x, dim)
        if keep:
            idx = Tensor(x.xp.expand_dims(idx.data, dim))
        return ReturnTypes(values, idx)
    return wrapper


# PyTorch name -> scratchgen's (its module-level function or Tensor method), for the docs table.
TABLE = [
    ("torch.tensor / torch.from_numpy", "sg.tensor / sg.from_numpy", "from_numpy shares the array"),
    ("x.sum(dim=1, keepdim=True)", "x.sum(axis=1, keepdims=True)", "either spelling works for every reduction"),
    ("x.max(dim=1)", "x.max(dim=1)", "(values, indices); x.max(axis=1) gives values, like torch.amax"),
    ("x.var(dim=1) / x.std(dim=1)", "x.var(axis=1, correction=1)", "dim= uses torch's unbiased default; axis= NumPy's correction=0"),
    ("x.size() / x.size(0)", "x.shape / x.shape[0]", "x.size alone is NumPy's element count"),
    ("x.numel()", "x.size", ""),
    ("x.to(torch.float64)", "x.astype(sg.float64)", "x.to('cuda') moves it"),
    ("torch.cat / torch.stack", "sg.cat (= sg.concatenate) / sg.stack", "dim= or axis="),
    ("torch.randn_like / rand_like / full_like", "sg.randn_like / sg.rand_like / sg.full_like", ""),
    ("torch.clamp", "sg.clamp (= sg.clip)", ""),
    ("F.cross_entropy / nn.CrossEntropyLoss", "sg.cross_entropy / nn.CrossEntropyLoss", ""),
    ("F.binary_cross_entropy_with_logits / nn.BCEWithLogitsLoss", "sg.binary_cross_entropy_with_logits / nn.BCEWithLogitsLoss", ""),
    ("F.binary_cross_entropy / nn.BCELoss", "sg.binary_cross_entropy / nn.BCELoss", "probabilities must lie in [0, 1]"),
    ("F.mse_loss / nn.MSELoss", "sg.mse_loss / nn.MSELoss", ""),
    ("F.gaussian_nll_loss / nn.GaussianNLLLoss", "sg.gaussian_nll / nn.GaussianNLLLoss", ""),
    ("torch.autograd.grad", "sg.grad", "create_graph=, retain_graph=, allow_unused="),
    ("torch.autograd.detect_anomaly", "sg.detect_anomaly", ""),
    ("torch.no_grad / enable_grad", "sg.no_grad / sg.enable_grad", ""),
    ("torch.manual_seed", "sg.manual_seed", ""),
    ("torch.set_num_threads", "sg.set_num_threads", "BLAS and the Numba kernels alike"),
    ("torch.linalg.inv / solve / det / slogdet / cholesky / eigh / svd / pinv / norm", "sg.linalg.inv / solve / det / slogdet / cholesky / eigh / svd / pinv / norm", "gradients to second order; see scratchgen/linalg.py for the failure modes"),
    ("torch.linalg.qr / torch.linalg.lu", "sg.linalg.qr / sg.linalg.lu", "forward only"),
    ("torch.autograd.functional.jacobian / hessian", "sg.linalg.jacobian / sg.linalg.hessian", ""),
    ("torch.einsum", "sg.einsum", "explicit output ('ij,jk->ik'), no ellipsis"),
    ("x % y / x // y / abs(x)", "x % y / x // y / abs(x)", ""),
    ("torch.utils.data.TensorDataset / DataLoader", "sg.data.TensorDataset / sg.data.DataLoader", "a DataLoader yields tuples"),
]


def markdown():
    rows = ["# PyTorch names in scratchgen", "",
            "Generated from `scratchgen/torch_names.py` (`python -m scratchgen.torch_names > docs/pytorch_names.md`);",
            "a test keeps it current.", "",
            "| PyTorch | scratchgen | note |", "| --- | --- | --- |"]
    rows += [f"| `{a}` | `{b}` | {c} |" for a, b, c in TABLE]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
