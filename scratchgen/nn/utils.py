"""torch.nn.utils's names: `sg.nn.utils.spectral_norm(layer)`, `sg.nn.utils.clip_grad_norm_(parameters,
max_norm)` (also `sg.optim.clip_grad_norm_`)."""
import math

import numpy as np

from ..tensor import Tensor
from .spectral_norm import spectral_norm  # noqa: F401


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients by min(1, max_norm / (total_norm + 1e-6)); return total_norm as a float.

    total_norm is the `norm_type` norm of all gradients taken together (as if concatenated), computed
    as PyTorch does: the norm of the per-tensor norms. Parameters without a gradient are ignored.
    Each grad Tensor keeps its identity but gets a new scaled array: writing into the old one could
    scale twice, because backward rules may hand several parameters views of one array (or read-only
    broadcast views).
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    norms = [float(g.xp.linalg.norm(g.data.reshape(-1), ord=norm_type)) if g.size else 0.0 for g in grads]
    total = float(np.linalg.norm(np.asarray(norms), ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is {total}")
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in {id(g): g for g in grads}.values():
            g.data = g.data * coef
    return total
