"""Probability distributions on engine Tensors, in the style of torch.distributions.

    from scratchgen.distributions import Normal, Bernoulli, kl_divergence
    q = Normal(mu, sigma)              # diagonal: one independent normal per element
    z = q.rsample()                    # z = mu + sigma * eps, differentiable in mu and sigma
    q.log_prob(z).sum(-1)              # elementwise log-densities; sum over event axes yourself
    kl_divergence(q, Normal(0.0, 1.0)) # closed form, chosen through a (type_p, type_q) registry

Every density, entropy and KL is composed from engine ops, so gradients of any order flow
to the parameters (and to the value). `sample` draws without a gradient; `rsample` draws
by the reparameterization trick (a deterministic, differentiable map of parameter-free noise)
where the family has one: Normal, Logistic and Uniform. Bernoulli and Categorical are
discrete: their gradients need the score-function estimator, E[f(x) * grad log p(x)].

Distributions are elementwise ("batched"): parameters broadcast against each other to
`batch_shape`, and `sample(shape)` returns `shape + batch_shape` (Categorical's last
parameter axis is its K categories). Random numbers come from `scratchgen.random.rng(generator)`:
pass `generator=sg.Generator(seed)` for a reproducible stream, else the global one is used
(`sg.manual_seed`).
"""
import math

import numpy as np

from . import backend
from .grad_mode import no_grad
from .losses import bce_with_logits
from .ops.elementwise import log, log1p, sigmoid, softplus, where
from .ops.index import take_along_axis
from .ops.reduce import logsumexp
from .ops.softmax import log_softmax, softmax
from .random import rng
from .tensor import Tensor, float32

__all__ = ["Distribution", "Normal", "MultivariateNormal", "Bernoulli", "Logistic", "Categorical", "Uniform",
           "kl_divergence", "register_kl", "log_mean_exp"]

LOG_2PI = math.log(2 * math.pi)


# -- helpers ---------------------------------------------------------------------------------------
def _as_tensor(value, like=None):
    """A Tensor for a parameter or a value: Tensors pass through; Python numbers take the float
    dtype (and device) of `like`, else float32, as do lists of floats; float arrays keep their
    dtype; integer and bool values become floats."""
    if isinstance(value, Tensor):
        return value
    if _is_number(value):
        dtype = like.dtype if like is not None and like.dtype.kind == "f" else float32
        arr = np.asarray(value, dtype=dtype)
    elif isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        if arr.dtype == np.float64:  # Python floats default to float32, as in sg.tensor
            arr = arr.astype(like.dtype if like is not None and like.dtype.kind == "f" else float32)
    elif isinstance(value, np.generic):
        arr = np.asarray(value)
    else:
        arr = value  # a NumPy (or CuPy) array keeps its dtype
    if arr.dtype.kind != "f":
        arr = arr.astype(like.dtype if like is not None and like.dtype.kind == "f" else float32)
    if like is not None and like.device != "cpu":
        arr = backend.to_device(arr, like.device)
    return Tensor(arr)


def _is_number(value):
    """A Python number (NumPy scalars such as np.float64 keep their dtype, like arrays)."""
    return isinstance(value, (bool, int, float)) and not isinstance(value, np.generic)


def _first_tensor(*values):
    return next((v for v in values if isinstance(v, Tensor)), None)


def _params(*values):
    """Convert parameters together, so numbers take the dtype of the tensors they meet."""
    like = _first_tensor(*values)
    if like is None:
        arrays = [v for v in values if not _is_number(v)]
        like = _as_tensor(arrays[0]) if arrays else None
    return tuple(_as_tensor(v, like) for v in values)


def _shape(shape):
    if shape is None:
        return ()
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)


def _to_like(arr, like):
    return Tensor(backend.to_device(arr, like.device) if like.device != "cpu" else arr)


def _check_positive(name, value, who):
    data = backend.to_device(value.data, "cpu")
    if not np.all(data > 0):
        raise ValueError(f"{who}: {name} must be positive, got min {data.min()}")


class Distribution:
    """Base class: subclasses define log_prob, entropy, mean, stddev and sample / rsample."""

    has_rsample = False
    batch_shape = ()

    def log_prob(self, value):
        raise NotImplementedError(f"{type(self).__name__}.log_prob")

    def rsample(self, shape=(), generator=None):
        raise NotImplementedError(
            f"{type(self).__name__} has no reparameterized sampler (rsample): it is a discrete "
            f"distribution, so its samples are not a differentiable function of its parameters. "
            f"Estimate gradients of E[f(x)] with the score-function (REINFORCE) estimator, "
            f"mean(f(x) * log_prob(x)) with x = sample() held fixed, or use a continuous relaxation.")

    def sample(self, shape=(), generator=None):
        """A draw of shape `shape + batch_shape`, outside the graph (no gradient)."""
        with no_grad():
            return self.rsample(shape, generator).detach()

    def entropy(self):
        raise NotImplementedError(f"{type(self).__name__}.entropy")

    @property
    def mean(self):
        raise NotImplementedError(f"{type(self).__name__}.mean")

    @property
    def stddev(self):
        raise NotImplementedError(f"{type(self).__name__}.stddev")

    @property
    def variance(self):
        s = self.stddev
        return s * s

    def _sample_shape(self, shape):
        return _shape(shape) + tuple(self.batch_shape)

    def __repr__(self):
        fields = ", ".join(f"{k}: shape {tuple(getattr(self, k).shape)}" for k in self._fields)
        return f"{type(self).__name__}({fields})"


# -- Normal ---------------------------------------------------------------------------------------
class Normal(Distribution):
    """Independent normals N(loc, scale^2), one per element (a diagonal Gaussian).

    rsample is the reparameterization trick: z = loc + scale * eps, eps ~ N(0, 1)."""

    has_rsample = True
    _fields = ("loc", "scale")

    def __init__(self, loc, scale, validate_args=True):
        self.loc, self.scale = _params(loc, scale)
        if validate_args:
            _check_positive("scale", self.scale, "Normal")
        self.batch_shape = np.broadcast_shapes(self.loc.shape, self.scale.shape)

    def log_prob(self, value):
        """log N(value; loc, scale^2) = -(value - loc)^2 / (2 scale^2) - log scale - log(2 pi) / 2."""
        value = _as_tensor(value, self.loc)
        z = (value - self.loc) / self.scale
        return -0.5 * (z * z) - log(self.scale) - 0.5 * LOG_2PI

    def rsample(self, shape=(), generator=None):
        eps = rng(generator).standard_normal(self._sample_shape(shape), dtype=self.loc.dtype)
        return self.loc + self.scale * _to_like(eps, self.loc)

    def entropy(self):
        """0.5 + 0.5 log(2 pi) + log scale, per element."""
        return (log(self.scale) + 0.5 * (1 + LOG_2PI)).broadcast_to(self.batch_shape)

    @property
    def mean(self):
        return self.loc.broadcast_to(self.batch_shape)

    @property
    def stddev(self):
        return self.scale.broadcast_to(self.batch_shape)

    def cdf(self, value):
        """P(X <= value) = (1 + erf((value - loc) / (scale sqrt 2))) / 2."""
        from .ops.math import erf
        value = _as_tensor(value, self.loc)
        return (1 + erf((value - self.loc) / (self.scale * math.sqrt(2)))) * 0.5

    def icdf(self, p):
        """The quantile: loc + scale sqrt(2) erfinv(2p - 1)."""
        from .ops.math import erfinv
        p = _as_tensor(p, self.loc)
        return self.loc + self.scale * math.sqrt(2) * erfinv(p * 2 - 1)


# -- MultivariateNormal ---------------------------------------------------------------------------
class MultivariateNormal(Distribution):
    """N(loc, Sigma) over the last axis, from a covariance matrix or its Cholesky factor L
    (Sigma = L L^T): log_prob by a triangular solve, rsample as loc + L eps."""

    has_rsample = True
    _fields = ("loc", "scale_tril")

    def __init__(self, loc, covariance_matrix=None, scale_tril=None):
        from . import linalg
        if (covariance_matrix is None) == (scale_tril is None):
            raise ValueError("MultivariateNormal: give exactly one of covariance_matrix and scale_tril")
        self.loc = _as_tensor(loc)
        self.scale_tril = (linalg.cholesky(_as_tensor(covariance_matrix, self.loc)) if scale_tril is None
                           else _as_tensor(scale_tril, self.loc))
        d = self.loc.shape[-1]
        if self.scale_tril.shape[-2:] != (d, d):
            raise ValueError(f"MultivariateNormal: scale of shape {self.scale_tril.shape} for a loc of size {d}")
        self.batch_shape = np.broadcast_shapes(self.loc.shape[:-1], self.scale_tril.shape[:-2])
        self.event_shape = (d,)

    def log_prob(self, value):
        from . import linalg
        value = _as_tensor(value, self.loc)
        diff = (value - self.loc).unsqueeze(-1)
        z = linalg.solve(self.scale_tril, diff).squeeze(-1)            # L z = x - loc
        from .ops.arrays import diagonal
        half_log_det = log(diagonal(self.scale_tril, 0, -2, -1)).sum(axis=-1)
        d = self.loc.shape[-1]
        return -0.5 * (z * z).sum(axis=-1) - half_log_det - 0.5 * d * LOG_2PI

    def rsample(self, shape=(), generator=None):
        shape = _shape(shape) + tuple(self.batch_shape) + self.event_shape
        eps = _to_like(rng(generator).standard_normal(shape, dtype=self.loc.dtype), self.loc)
        return self.loc + (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def entropy(self):
        from .ops.arrays import diagonal
        d = self.loc.shape[-1]
        return log(diagonal(self.scale_tril, 0, -2, -1)).sum(axis=-1) + 0.5 * d * (1 + LOG_2PI)

    @property
    def mean(self):
        return self.loc

    @property
    def covariance_matrix(self):
        return self.scale_tril @ self.scale_tril.mT


# -- Logistic -------------------------------------------------------------------------------------
class Logistic(Distribution):
    """The logistic distribution: density e^-t / (scale (1 + e^-t)^2), t = (x - loc) / scale.

    rsample: x = loc + scale * logit(u), u ~ U(0, 1) (inverse-CDF reparameterization)."""

    has_rsample = True
    _fields = ("loc", "scale")

    def __init__(self, loc, scale, validate_args=True):
        self.loc, self.scale = _params(loc, scale)
        if validate_args:
            _check_positive("scale", self.scale, "Logistic")
        self.batch_shape = np.broadcast_shapes(self.loc.shape, self.scale.shape)

    def log_prob(self, value):
        """-t - 2 softplus(-t) - log scale: symmetric, finite in both tails."""
        value = _as_tensor(value, self.loc)
        t = (value - self.loc) / self.scale
        return -t - 2 * softplus(-t) - log(self.scale)

    def rsample(self, shape=(), generator=None):
        u = rng(generator).random(self._sample_shape(shape))  # float64, in [0, 1)
        tiny = np.finfo(np.float64).tiny
        u = np.clip(u, tiny, 1 - np.finfo(np.float64).epsneg)
        eps = (np.log(u) - np.log1p(-u)).astype(self.loc.dtype)
        return self.loc + self.scale * _to_like(eps, self.loc)

    def entropy(self):
        """log scale + 2, per element."""
        return (log(self.scale) + 2.0).broadcast_to(self.batch_shape)

    @property
    def mean(self):
        return self.loc.broadcast_to(self.batch_shape)

    @property
    def stddev(self):
        return (self.scale * (math.pi / math.sqrt(3))).broadcast_to(self.batch_shape)


# -- Uniform --------------------------------------------------------------------------------------
class Uniform(Distribution):
    """Uniform on [low, high]; rsample = low + (high - low) * u, u ~ U[0, 1)."""

    has_rsample = True
    _fields = ("low", "high")

    def __init__(self, low, high, validate_args=True):
        self.low, self.high = _params(low, high)
        if validate_args:
            _check_positive("high - low", Tensor(self.high.data - self.low.data), "Uniform")
        self.batch_shape = np.broadcast_shapes(self.low.shape, self.high.shape)

    def log_prob(self, value):
        """-log(high - low) on [low, high] (both ends included, as scipy.stats.uniform), else -inf."""
        value = _as_tensor(value, self.low)
        inside = (value.data >= self.low.data) & (value.data <= self.high.data)
        inside = np.broadcast_to(inside, np.broadcast_shapes(value.shape, self.batch_shape))
        return where(inside, -log(self.high - self.low), -math.inf)

    def rsample(self, shape=(), generator=None):
        u = rng(generator).random(self._sample_shape(shape), dtype=self.low.dtype)
        return self.low + (self.high - self.low) * _to_like(u, self.low)

    def entropy(self):
        return log(self.high - self.low).broadcast_to(self.batch_shape)

    @property
    def mean(self):
        return ((self.low + self.high) * 0.5).broadcast_to(self.batch_shape)

    @property
    def stddev(self):
        return ((self.high - self.low) * (1 / math.sqrt(12))).broadcast_to(self.batch_shape)


# -- Bernoulli ------------------------------------------------------------------------------------
class Bernoulli(Distribution):
    """Independent Bernoulli(p) variables on {0, 1}, given logits (preferred) or probs.

    log_prob(x) = -BCE-with-logits = -(softplus(l) - l x): exact for any logit, even +-1e4,
    where log(sigmoid(l)) would give log(0) = -inf. From probs, the logits are log p - log(1-p)
    with p clamped to [eps, 1 - eps] of its dtype (as PyTorch does)."""

    _fields = ("logits",)

    def __init__(self, logits=None, probs=None):
        if (logits is None) == (probs is None):
            raise ValueError("Bernoulli takes exactly one of logits= or probs=")
        if logits is not None:
            self.logits, = _params(logits)
            self._probs = None
        else:
            self._probs, = _params(probs)
            p = backend.to_device(self._probs.data, "cpu")
            if np.any((p < 0) | (p > 1)):
                raise ValueError(f"Bernoulli: probs must lie in [0, 1], got range [{p.min()}, {p.max()}]")
            eps = float(np.finfo(self._probs.dtype).eps)
            p = self._probs.clip(eps, 1 - eps)
            self.logits = log(p) - log1p(-p)
        self.batch_shape = tuple(self.logits.shape)

    @property
    def probs(self):
        return self._probs if self._probs is not None else sigmoid(self.logits)

    def log_prob(self, value):
        value = _as_tensor(value, self.logits)
        shape = np.broadcast_shapes(value.shape, self.logits.shape)
        return -bce_with_logits(self.logits.broadcast_to(shape), value.broadcast_to(shape))

    def sample(self, shape=(), generator=None):
        shape = self._sample_shape(shape)
        p = backend.to_device(sigmoid(self.logits.detach()).data, "cpu")
        x = (rng(generator).random(shape) < p).astype(self.logits.dtype)
        return _to_like(x, self.logits)

    def entropy(self):
        """H = softplus(l) - l sigmoid(l) = BCE-with-logits of sigmoid(l) against itself."""
        return bce_with_logits(self.logits, sigmoid(self.logits))

    @property
    def mean(self):
        return self.probs

    @property
    def stddev(self):
        # p (1 - p) as sigmoid(l) sigmoid(-l): no cancellation when p is close to 1.
        return (sigmoid(self.logits) * sigmoid(-self.logits)).sqrt()


# -- Categorical ----------------------------------------------------------------------------------
class Categorical(Distribution):
    """A distribution over {0, ..., K-1}; the last axis of logits (or probs) holds the K categories,
    the axes before it are the batch. Logits are normalized with log_softmax; probs by their sum.
    `mean` and `stddev` are the moments of the category index k."""

    _fields = ("logits",)

    def __init__(self, logits=None, probs=None):
        if (logits is None) == (probs is None):
            raise ValueError("Categorical takes exactly one of logits= or probs=")
        if logits is not None:
            logits, = _params(logits)
            self._probs = None
        else:
            probs, = _params(probs)
            p = backend.to_device(probs.data, "cpu")
            if np.any(p < 0) or np.any(p.sum(axis=-1) <= 0):
                raise ValueError("Categorical: probs must be non-negative with a positive sum over the last axis")
            self._probs = probs / probs.sum(axis=-1, keepdims=True)
            logits = log(self._probs.clip(np.finfo(probs.dtype).tiny, None))
        if logits.ndim == 0:
            raise ValueError("Categorical needs logits/probs with a last axis of K categories")
        self.logits = log_softmax(logits, axis=-1)  # normalized log-probabilities
        self.num_categories = logits.shape[-1]
        self.batch_shape = tuple(logits.shape[:-1])

    @property
    def probs(self):
        return self._probs if self._probs is not None else softmax(self.logits, axis=-1)

    def _index(self, value):
        idx = value.data if isinstance(value, Tensor) else np.asarray(value)
        idx = backend.to_device(idx, "cpu")
        if idx.dtype.kind == "f":
            if not np.all(idx == np.round(idx)):
                raise ValueError("Categorical.log_prob: values must be integer category indices")
            idx = idx.astype(np.int64)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Categorical.log_prob: values must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_categories):
            raise ValueError(f"Categorical.log_prob: values must lie in [0, {self.num_categories}), "
                             f"got range [{idx.min()}, {idx.max()}]")
        return idx

    def log_prob(self, value):
        idx = self._index(value)
        shape = np.broadcast_shapes(idx.shape, self.batch_shape)
        lp = self.logits.broadcast_to(shape + (self.num_categories,))
        idx = np.broadcast_to(idx, shape)[..., None]
        if self.logits.device != "cpu":
            idx = backend.to_device(np.ascontiguousarray(idx), self.logits.device)
        return take_along_axis(lp, idx, axis=-1).reshape(shape)

    def sample(self, shape=(), generator=None):
        """Inverse-CDF sampling: the first k with cdf_k > u, u ~ U[0, 1)."""
        shape = self._sample_shape(shape)
        p = backend.to_device(self.probs.detach().data, "cpu").astype(np.float64)
        cdf = np.cumsum(p, axis=-1)
        u = rng(generator).random(shape + (1,)) * cdf[..., -1:]
        k = np.minimum((u >= cdf).sum(axis=-1), self.num_categories - 1)
        return _to_like(k.astype(np.int64), self.logits)

    def entropy(self):
        return -(self.probs * self.logits).sum(axis=-1)

    def _index_values(self):
        return _to_like(np.arange(self.num_categories, dtype=self.logits.dtype), self.logits)

    @property
    def mean(self):
        return (self.probs * self._index_values()).sum(axis=-1)

    @property
    def stddev(self):
        k = self._index_values()
        m = self.mean
        return ((self.probs * (k * k)).sum(axis=-1) - m * m).clip(0, None).sqrt()


# -- KL divergence ----------------------------------------------------------------------------------
_KL_REGISTRY = {}


def register_kl(type_p, type_q):
    """Decorator registering `fn(p, q) -> KL(p || q)` for p of type_p and q of type_q (subclasses
    included; the most specific registered pair wins)."""
    if not (isinstance(type_p, type) and issubclass(type_p, Distribution)
            and isinstance(type_q, type) and issubclass(type_q, Distribution)):
        raise TypeError("register_kl takes two Distribution subclasses")

    def decorate(fn):
        _KL_REGISTRY[type_p, type_q] = fn
        return fn

    return decorate


def _dispatch(tp, tq):
    matches = [(tp.__mro__.index(a) + tq.__mro__.index(b), (a, b)) for a, b in _KL_REGISTRY
               if issubclass(tp, a) and issubclass(tq, b)]
    if not matches:
        return None
    return _KL_REGISTRY[min(matches, key=lambda m: m[0])[1]]


def kl_divergence(p, q):
    """KL(p || q) = E_p[log p(x) - log q(x)], elementwise over the batch, in closed form."""
    fn = _dispatch(type(p), type(q))
    if fn is None:
        known = ", ".join(f"({a.__name__}, {b.__name__})" for a, b in _KL_REGISTRY) or "none"
        raise NotImplementedError(
            f"kl_divergence: no closed form registered for KL({type(p).__name__} || {type(q).__name__}); "
            f"registered pairs: {known}. Register one with "
            f"@register_kl({type(p).__name__}, {type(q).__name__}), or estimate it by Monte Carlo: "
            f"mean(p.log_prob(x) - q.log_prob(x)) with x drawn from p.")
    return fn(p, q)


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    """log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2."""
    ratio = p.scale / q.scale
    diff = (p.loc - q.loc) / q.scale
    out = 0.5 * (ratio * ratio + diff * diff) - 0.5 - log(ratio)
    return out.broadcast_to(np.broadcast_shapes(p.batch_shape, q.batch_shape))


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    """sum over x in {0,1} of p(x) (log p(x) - log q(x)), with log p(1) = -softplus(-l),
    log p(0) = -softplus(l): finite for any logits."""
    lp, lq = p.logits, q.logits
    return sigmoid(lp) * (softplus(-lq) - softplus(-lp)) + sigmoid(-lp) * (softplus(lq) - softplus(lp))


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    if p.num_categories != q.num_categories:
        raise ValueError(f"kl_divergence: Categoricals over {p.num_categories} and {q.num_categories} categories")
    return (p.probs * (p.logits - q.logits)).sum(axis=-1)


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p, q):
    """log((h_q - l_q) / (h_p - l_p)) when [l_p, h_p] lies inside [l_q, h_q], else +inf."""
    inside = (q.low.data <= p.low.data) & (p.high.data <= q.high.data)
    value = log(q.high - q.low) - log(p.high - p.low)
    shape = np.broadcast_shapes(p.batch_shape, q.batch_shape)
    return where(np.broadcast_to(inside, shape), value.broadcast_to(shape), math.inf)


def log_mean_exp(x, axis=0):
    """log(mean(exp(x))) along `axis` = logsumexp(x) - log n, without overflow."""
    return logsumexp(x, axis=axis) - math.log(x.shape[axis])
