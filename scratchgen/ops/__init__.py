"""The op library. Each module pairs every forward with its backward rule; this file
binds them to Tensor as methods and operators. A new op family (conv2d, say) is one
new module plus its lines in the table below."""
from ..tensor import Tensor
from . import arrays, elementwise, index, math, matmul, reduce, shape, softmax
from .elementwise import *  # noqa: F401,F403
from .math import *  # noqa: F401,F403
from .arrays import *  # noqa: F401,F403
from .arrays import clamp  # noqa: F401 - tensor bounds too
from .index import getitem, setitem, scatter_add, take_along_axis, gather  # noqa: F401
from .matmul import matmul as matmul_op
from .reduce import sum, mean, var, std, max, min, logsumexp, argmax, argmin  # noqa: F401
from .shape import *  # noqa: F401,F403
from .softmax import softmax, log_softmax  # noqa: F401
from .coupling import affine_coupling, affine_coupling_inverse  # noqa: F401
from .masked_conv import masked_conv2d  # noqa: F401
from .conv import (  # noqa: F401
    unfold, fold, conv2d, conv_transpose2d, avg_pool2d, max_pool2d, upsample_nearest2d,
)

E = elementwise

# PyTorch's dim=/keepdim= beside NumPy's axis=/keepdims= (scratchgen/torch_names.py)
from ..torch_names import accept_dim as _dim, extreme as _extreme, variance as _variance  # noqa: E402
sum, mean, logsumexp = _dim(reduce.sum), _dim(reduce.mean), _dim(reduce.logsumexp)
prod, cumprod, cumsum = _dim(arrays.prod), _dim(arrays.cumprod), _dim(arrays.cumsum)
argmax, argmin = _dim(reduce.argmax), _dim(reduce.argmin)
var, std = _variance(reduce.var), _variance(reduce.std)
max, min = _extreme(reduce.max, reduce.argmax), _extreme(reduce.min, reduce.argmin)
softmax, log_softmax = _dim(softmax), _dim(log_softmax)
concatenate, stack, split = _dim(shape.concatenate), _dim(shape.stack), _dim(shape.split)
cat = concatenate
squeeze, unsqueeze, flip = _dim(shape.squeeze), _dim(shape.unsqueeze), _dim(shape.flip)


def _swap(fn):
    return lambda x, y: fn(y, x)


_METHODS = {
    # operators
    "__add__": E.add, "__radd__": _swap(E.add), "__sub__": E.sub, "__rsub__": _swap(E.sub),
    "__mul__": E.mul, "__rmul__": _swap(E.mul), "__truediv__": E.div, "__rtruediv__": _swap(E.div),
    "__pow__": E.pow, "__rpow__": _swap(E.pow), "__neg__": E.neg,
    "__matmul__": matmul_op, "__rmatmul__": _swap(matmul_op),
    "__lt__": E.lt, "__le__": E.le, "__gt__": E.gt, "__ge__": E.ge, "__eq__": E.eq, "__ne__": E.ne,
    "__getitem__": getitem, "__setitem__": setitem, "__mod__": math.remainder, "__rmod__": _swap(math.remainder),
    "__floordiv__": math.floor_divide, "__rfloordiv__": _swap(math.floor_divide),
    "__abs__": E.abs, "__pos__": lambda x: x,
    # elementwise
    "exp": E.exp, "log": E.log, "log1p": E.log1p, "expm1": E.expm1, "sqrt": E.sqrt, "abs": E.abs,
    "sin": E.sin, "cos": E.cos, "tanh": E.tanh, "sigmoid": E.sigmoid, "relu": E.relu,
    "softplus": E.softplus, "logsigmoid": E.logsigmoid, "sign": E.sign, "pow": E.pow,
    "astype": E.astype, "maximum": E.maximum, "minimum": E.minimum,
    "matmul": matmul_op,
    **{name: getattr(math, name) for name in math.__all__},
    **{name: getattr(arrays, name) for name in ("prod", "cumprod", "cumsum", "diff", "diagonal", "trace", "tril", "triu", "roll",
                                                   "moveaxis", "rot90", "tile", "repeat_interleave", "sort",
                                                   "any", "all", "dot", "inner", "outer", "chunk")},
    "repeat": lambda x, *sizes: arrays.tile(x, sizes[0] if len(sizes) == 1 and isinstance(sizes[0], (tuple, list))
                                            else sizes),  # torch's Tensor.repeat = np.tile
    "clamp": arrays.clamp, "clip": arrays.clamp, "prod": prod, "cumprod": cumprod, "cumsum": cumsum,
    # reductions
    "sum": sum, "mean": mean, "var": var, "std": std, "max": max,
    "min": min, "logsumexp": logsumexp, "argmax": argmax, "argmin": argmin,
    "softmax": softmax, "log_softmax": log_softmax,
    # shape
    "reshape": shape.reshape, "view": shape.reshape, "transpose": shape.transpose, "permute": shape.permute,
    "swapaxes": shape.swapaxes, "broadcast_to": shape.broadcast_to, "expand": shape.broadcast_to,
    "squeeze": squeeze, "unsqueeze": unsqueeze, "flatten": shape.flatten, "flip": flip,
    "gather": take_along_axis, "take_along_axis": take_along_axis,
}
for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
Tensor.T = property(lambda x: shape.transpose(x))
Tensor.mT = property(lambda x: shape.swapaxes(x, -1, -2))
matmul = matmul_op
