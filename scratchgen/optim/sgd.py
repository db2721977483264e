"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay.

    g_t     = grad f(theta_{t-1}) + lambda * theta_{t-1}
    b_t     = g_t  (t = 1),   mu * b_{t-1} + (1 - tau) * g_t  (t > 1)
    d_t     = g_t + mu * b_t  (nesterov)  |  b_t  (mu != 0)  |  g_t  (mu == 0)
    theta_t = theta_{t-1} - gamma * d_t
"""
from scratchgen.kernels import optim_step

from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check(self, group):
        super()._check(group)
        if group["momentum"] < 0 or group["weight_decay"] < 0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _update(self, group, p, g, state, step):
        optim_step.sgd(p, g, state.get("momentum_buffer"), lr=group["lr"], momentum=group["momentum"],
                       dampening=group["dampening"], weight_decay=group["weight_decay"],
                       nesterov=group["nesterov"], first=step == 1)
