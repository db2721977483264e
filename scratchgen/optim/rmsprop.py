"""RMSProp (Hinton, lecture 6e), with the centered variant (Graves, 2013), momentum and L2 weight decay.

    g_t     = grad f(theta_{t-1}) + lambda * theta_{t-1}
    v_t     = alpha * v_{t-1} + (1 - alpha) * g_t^2
    gbar_t  = alpha * gbar_{t-1} + (1 - alpha) * g_t,   vtilde_t = v_t - gbar_t^2   (centered)
    vtilde_t = v_t                                                                   (otherwise)
    b_t     = mu * b_{t-1} + g_t / (sqrt(vtilde_t) + eps),   theta_t = theta_{t-1} - gamma * b_t   (mu > 0)
    theta_t = theta_{t-1} - gamma * g_t / (sqrt(vtilde_t) + eps)                                    (mu = 0)
"""
from scratchgen.kernels import optim_step

from .optimizer import Optimizer


class RMSProp(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _check(self, group):
        super()._check(group)
        if not 0 <= group["alpha"] <= 1 or group["eps"] < 0 or group["momentum"] < 0:
            raise ValueError("need 0 <= alpha <= 1, eps >= 0 and momentum >= 0")

    def _state_names(self, group):
        return (("square_avg",) + (("grad_avg",) if group["centered"] else ())
                + (("momentum_buffer",) if group["momentum"] > 0 else ()))

    def _update(self, group, p, g, state, step):
        optim_step.rmsprop(p, g, state["square_avg"], state.get("grad_avg"), state.get("momentum_buffer"),
                           lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                           weight_decay=group["weight_decay"], momentum=group["momentum"],
                           centered=group["centered"])


RMSprop = RMSProp  # PyTorch's spelling
