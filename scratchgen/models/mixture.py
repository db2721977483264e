"""A finite mixture of density models:

    p(x) = sum_k pi_k p_k(x),   log p(x) = logsumexp_k (log pi_k + log p_k(x)).

The components are any models with `log_prob(x)` (and `sample(n)` to sample), for example
MADEs trained separately with different orderings. Unlike MADE's own mask ensemble, where the
K orderings share one set of weights, every component here has its own; the mixture is still
an exact, normalised density, so its likelihood is comparable to a single model's. The
mixing weights are fixed (not trained): they are chosen outside, on validation data.
"""
import numpy as np

from .. import nn
from ..grad_mode import no_grad
from ..ops.shape import concatenate, stack
from ..tensor import Tensor

__all__ = ["Mixture"]


class Mixture(nn.Module):
    def __init__(self, components, weights=None):
        super().__init__()
        components = list(components)
        if not components:
            raise ValueError("Mixture needs at least one component model")
        for i, c in enumerate(components):
            if not callable(getattr(c, "log_prob", None)):
                raise TypeError(f"Mixture component {i} ({type(c).__name__}) has no log_prob(x) method")
        weights = np.ones(len(components)) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(components),) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"Mixture weights must be {len(components)} finite positive numbers, one per "
                             f"component, got {weights.tolist()}")
        self.components = nn.ModuleList(components)
        self.weights = weights / weights.sum()   # pi_k, normalised

    def log_prob(self, x):
        """Exact log-likelihood per example: logsumexp_k (log pi_k + log p_k(x))."""
        per_component = stack([c.log_prob(x) for c in self.components], axis=0)   # (K, N)
        log_pi = Tensor(np.log(self.weights)[:, None].astype(per_component.dtype)).to(per_component.device)
        return (per_component + log_pi).logsumexp(axis=0)

    @no_grad()
    def sample(self, n, generator=None):
        """Ancestral sampling: k ~ Categorical(pi), then x ~ p_k; returned in random order."""
        from ..random import rng
        draw = rng(generator)
        counts = draw.multinomial(n, self.weights)
        kwargs = {} if generator is None else {"generator": generator}
        parts = [c.sample(int(m), **kwargs) for c, m in zip(self.components, counts) if m > 0]
        x = concatenate(parts, axis=0)
        return x[draw.permutation(n)]

    def extra_repr(self):
        return f"weights={np.round(self.weights, 4).tolist()}"

