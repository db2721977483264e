"""Loss modules, as in torch.nn: each holds its `reduction` and calls the function of the same
loss in scratchgen/losses.py, whose gradient is exact to every order."""
from .. import losses as L
from .module import Module


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits (N, C) against integer labels (N,)."""

    def forward(self, logits, labels):
        return L.cross_entropy(logits, labels, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    def forward(self, logits, target):
        return L.binary_cross_entropy_with_logits(logits, target, reduction=self.reduction)


class BCELoss(_Loss):
    """On probabilities in [0, 1]; prefer BCEWithLogitsLoss, which is stable for any logit."""

    def forward(self, probs, target):
        return L.binary_cross_entropy(probs, target, reduction=self.reduction)


class MSELoss(_Loss):
    def forward(self, input, target):
        return L.mse_loss(input, target, reduction=self.reduction)


class GaussianNLLLoss(_Loss):
    def __init__(self, full=False, eps=1e-6, reduction="mean"):
        super().__init__(reduction)
        self.full, self.eps = full, eps

    def forward(self, input, target, var):
        return L.gaussian_nll(input, target, var, full=self.full, eps=self.eps, reduction=self.reduction)


class NLLLoss(_Loss):
    def forward(self, log_probs, labels):
        return L.nll_loss(log_probs, labels, reduction=self.reduction)
