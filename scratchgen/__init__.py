"""scratchgen: deep generative models on a from-scratch autograd engine."""
from . import threads  # first: the thread policy must be in place before BLAS or Numba start threads
from . import allocator  # noqa: F401 - array-sized blocks stay in the heap for reuse
from .tensor import Tensor, tensor, float32, float64, int64, int32, bool_
from .grad_mode import no_grad, enable_grad, set_grad_enabled, is_grad_enabled
from .autograd import grad
from .anomaly import detect_anomaly
from .random import manual_seed, Generator
from .creation import (  # noqa: F401
    zeros, ones, full, zeros_like, ones_like, full_like, rand_like, randn_like, from_numpy, arange, eye, rand,
    randn, randint,
)
from .ops import (  # noqa: F401
    add, sub, mul, div, neg, pow, exp, log, log1p, expm1, sqrt, abs, sign, sin, cos, tanh, sigmoid,
    relu, leaky_relu, elu, softplus, logsigmoid, maximum, minimum, where, clip, astype,
    sum, mean, var, std, max, min, logsumexp, argmax, argmin, softmax, log_softmax, matmul,
    reshape, transpose, permute, swapaxes, broadcast_to, squeeze, unsqueeze, flatten,
    concatenate, cat, stack, split, pad, flip, getitem, take_along_axis, gather, unbroadcast,
    affine_coupling, affine_coupling_inverse,
    unfold, fold, conv2d, conv_transpose2d, avg_pool2d, max_pool2d, upsample_nearest2d, masked_conv2d,
)
from .ops.math import *  # noqa: F401,F403 - tan ... remainder, and PyTorch's asin ... atan2
from .ops.arrays import *  # noqa: F401,F403 - cumsum, diagonals, triangles, rolls, einsum, ...
from .ops import prod, cumprod, cumsum  # noqa: F401,E402 - with dim= / keepdim= as well
from .losses import (  # noqa: F401
    binary_cross_entropy_with_logits, binary_cross_entropy, mse_loss, cross_entropy, gaussian_nll,
)
from .gradcheck import gradcheck, gradgradcheck, GradcheckError
from .serialization import save, load  # noqa: F401

from .ops.arrays import clamp  # noqa: E402 - number or tensor bounds
set_num_threads, get_num_threads = threads.set_threads, threads.threads
__version__ = "0.1.0"


def __getattr__(name):
    # Submodules with optional dependencies (hypothesis, matplotlib) load on first use.
    import importlib
    if name in ("testing", "nn", "optim", "data", "models", "specs", "recipes", "distributions", "metrics", "train",
                "plots", "linalg"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'scratchgen' has no attribute {name!r}")
