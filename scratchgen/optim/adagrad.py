"""Adagrad (Duchi, Hazan and Singer, 2011), with PyTorch's learning-rate decay and L2 weight decay.

    g_t     = grad f(theta_{t-1}) + lambda * theta_{t-1}
    s_t     = s_{t-1} + g_t^2                                  (s_0 = initial_accumulator_value)
    theta_t = theta_{t-1} - gamma / (1 + (t - 1) * decay) * g_t / (sqrt(s_t) + eps)
"""
from scratchgen.kernels import optim_step

from .optimizer import Optimizer


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def _check(self, group):
        super()._check(group)
        if group["lr_decay"] < 0 or group["eps"] < 0 or group["initial_accumulator_value"] < 0:
            raise ValueError(f"Adagrad needs lr_decay >= 0, eps >= 0 and initial_accumulator_value >= 0, got "
                             f"{group['lr_decay']}, {group['eps']} and {group['initial_accumulator_value']}")

    def _state_names(self, group):
        return ("sum",)

    def _update(self, group, p, g, state, step):
        if step == 1 and group["initial_accumulator_value"]:   # the state buffers start at zero
            state["sum"] += group["initial_accumulator_value"]
        optim_step.adagrad(p, g, state["sum"], lr=group["lr"], lr_decay=group["lr_decay"], eps=group["eps"],
                           weight_decay=group["weight_decay"], step=step)
