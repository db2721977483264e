"""Learning-rate schedulers with PyTorch's signatures and (closed-form) formulas.

Each scheduler sets `group['lr']` of every param group from that group's initial lr eta_0 (saved as
group['initial_lr']) and the epoch count e = `last_epoch`. Construction counts as epoch 0 (as in
PyTorch, it calls step() once). Closed forms, so no rounding drifts in over many steps; a manual change
of group['lr'] is overwritten at the next step() (chaining two schedulers on one group is not supported).
"""
import math

import numpy as np

from .optimizer import _plain


class LRScheduler:
    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError("param group has no 'initial_lr': resume a scheduler with last_epoch=-1 first")
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self):
        """The lr of each group at epoch `self.last_epoch`."""
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        """Plain values (numbers, and arrays for the per-group lists): saveable by an npz-based saver.
        Functions (LambdaLR's) are left out, as in PyTorch: the code that built the scheduler has them."""
        return {k: np.asarray(v) if isinstance(v, list) else v
                for k, v in self.__dict__.items() if k != "optimizer" and not callable(v)}

    def load_state_dict(self, state_dict):
        for k, v in state_dict.items():
            v = _plain(v)
            self.__dict__[k] = [float(x) for x in np.asarray(v).reshape(-1)] if isinstance(
                self.__dict__.get(k), list) else v


class StepLR(LRScheduler):
    """eta_e = eta_0 * gamma ** floor(e / step_size)"""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [lr * self.gamma ** (self.last_epoch // self.step_size) for lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """eta_e = eta_0 * gamma ** e"""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [lr * self.gamma ** self.last_epoch for lr in self.base_lrs]


class LambdaLR(LRScheduler):
    """eta_e = eta_0 * lr_lambda(e), one function for every group."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        if not callable(lr_lambda):
            raise TypeError(f"lr_lambda must be a function of the epoch, got {type(lr_lambda).__name__}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [lr * self.lr_lambda(self.last_epoch) for lr in self.base_lrs]


class LinearLR(LRScheduler):
    """eta_e = eta_0 * (s + (f - s) * min(e, total_iters) / total_iters), s = start_factor, f = end_factor.

    PyTorch's arguments in PyTorch's order; the defaults here decay linearly to zero (1.0 -> 0.0).
    """

    def __init__(self, optimizer, start_factor=1.0, end_factor=0.0, total_iters=5, last_epoch=-1):
        if start_factor <= 0 or end_factor < 0 or total_iters < 1:
            raise ValueError("need start_factor > 0, end_factor >= 0 and total_iters >= 1")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        frac = min(self.last_epoch, self.total_iters) / self.total_iters
        return [lr * (self.start_factor + (self.end_factor - self.start_factor) * frac) for lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """eta_e = eta_min + (eta_0 - eta_min) * (1 + cos(pi * e / T_max)) / 2   (SGDR without restarts)"""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        cos = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (lr - self.eta_min) * cos for lr in self.base_lrs]
