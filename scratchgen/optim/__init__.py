"""Optimizers (SGD, RMSProp, Adam, AdamW, Adagrad), learning-rate schedulers, gradient clipping and
parameter averaging (EMA).

Each step runs one fused Numba kernel per parameter, in place on the parameter's own array: the
optimizer never rebinds `p.data` (the array a user holds stays the parameter's). See optimizer.py.
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm_
from .ema import EMA
from .optimizer import Optimizer
from .rmsprop import RMSProp, RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "RMSProp", "RMSprop", "Adam", "AdamW", "Adagrad", "clip_grad_norm_", "EMA", "lr_scheduler"]
