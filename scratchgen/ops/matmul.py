"""Matrix product with NumPy's rules: 1-D operands and broadcast batch dimensions."""
from ..tensor import record
from .elementwise import operands, unbroadcast


def matmul(a, b):
    a, b = operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: needs at least 1-D operands, got shapes {a.shape} and {b.shape}; use * for scalars")
    try:
        data = a.data @ b.data
    except ValueError:
        ka = a.shape[-1]
        kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match: the last axis of the "
                         f"first ({ka}) must equal the {'second-to-last' if b.ndim > 1 else 'only'} "
                         f"axis of the second ({kb}), and batch axes must broadcast") from None
    return record(data, matmul_vjp, (a, b))


def matmul_vjp(g, out, a, b):
    # Treat 1-D operands as a row (a) or a column (b) matrix, then drop those axes again.
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    g2 = g.unsqueeze(-1) if b.ndim == 1 else g
    g2 = g2.unsqueeze(-2) if a.ndim == 1 else g2
    ga = unbroadcast(g2 @ b2.mT, a2.shape).reshape(a.shape) if a._requires_grad else None
    gb = unbroadcast(a2.mT @ g2, b2.shape).reshape(b.shape) if b._requires_grad else None
    return (ga, gb)
