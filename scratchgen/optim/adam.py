"""Adam (Kingma & Ba, 2015) with AMSGrad (Reddi et al., 2018), and AdamW (Loshchilov & Hutter, 2019).

    g_t     = grad f(theta_{t-1})  (+ lambda * theta_{t-1}: Adam's L2 weight decay)
    theta_{t-1} <- (1 - eta * lambda) * theta_{t-1}   (AdamW's decoupled weight decay)
    m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
    v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2
    vmax_t  = max(vmax_{t-1}, v_t)                    (amsgrad: replaces v_t below)
    theta_t = theta_{t-1} - eta / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)
    bias_correction=False:  theta_t = theta_{t-1} - eta * m_t / (sqrt(v_t) + eps)

m_t, v_t and theta_t that fall below the dtype's smallest normal number (1.2e-38 in float32) are
set to 0, as torch.set_flush_denormal(True) would: subnormal arithmetic is tens of times slower
on x86, and dead ReLU units and masked weights put many moments there over a long run.
"""
from scratchgen.kernels import optim_step

from .optimizer import Optimizer


class Adam(Optimizer):
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 bias_correction=True):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, bias_correction=bias_correction))

    def _check(self, group):
        super()._check(group)
        group["betas"] = tuple(float(b) for b in group["betas"])
        if not all(0 <= b < 1 for b in group["betas"]) or group["eps"] < 0 or group["weight_decay"] < 0:
            raise ValueError("need 0 <= beta < 1, eps >= 0 and weight_decay >= 0")

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _update(self, group, p, g, state, step):
        beta1, beta2 = group["betas"]
        optim_step.adam(p, g, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                        lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                        weight_decay=group["weight_decay"], step=step, amsgrad=group["amsgrad"],
                        decoupled=self._decoupled, bias_correction=group["bias_correction"])


class AdamW(Adam):
    """Adam with decoupled weight decay: theta <- (1 - lr * weight_decay) * theta before the Adam step."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 bias_correction=True):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, bias_correction)
