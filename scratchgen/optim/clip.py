"""Gradient clipping by total norm: `sg.optim.clip_grad_norm_` is `sg.nn.utils.clip_grad_norm_`
(where PyTorch keeps it), exported here as well."""
from ..nn.utils import clip_grad_norm_  # noqa: F401
