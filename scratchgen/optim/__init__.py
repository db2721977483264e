"""Optimizers (SGD, RMSProp, Adam, AdamW, Adagrad), learning-rate schedulers, gradient clipping and
parameter averaging (EMA).

Updates run as one fused Numba kernel per (param group, dtype) over flat buffers: see optimizer.py.
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
