"""Two unbiased estimators of d/dmu E_{z ~ N(mu, sigma^2)}[f(z)], and why the VAE uses the first.

Reparameterization (pathwise) estimator (Kingma & Welling 2014, Sec. 2.4): write
z = mu + sigma * eps with eps ~ N(0, 1), so the randomness no longer depends on mu and

    d/dmu E[f(z)] = E[f'(mu + sigma eps)]  ~=  1/n sum_i f'(z_i)

Score-function (REINFORCE) estimator: needs only values of f, never its derivative,

    d/dmu E[f(z)] = E[f(z) d/dmu log q(z)]  ~=  1/n sum_i f(z_i) (z_i - mu) / sigma^2

For f(z) = z^2 the exact gradient is 2 mu, and the per-sample variances are known:
    pathwise  Var[2 z]                    = 4 sigma^2
    score     Var[z^2 (z - mu) / sigma^2] = mu^4 / sigma^2 + 14 mu^2 + 15 sigma^2
Both estimates are computed by the engine: `rsample` keeps the path from mu to z in the
graph; for the score function z comes from `sample` (no path) and we differentiate the
surrogate f(z) * log q(z) instead.

    python examples/reparameterization.py
"""
import math

import numpy as np

import scratchgen as sg
from scratchgen.distributions import Normal

MU, SIGMA = 1.0, 0.8
N_SAMPLES, REPEATS = 10, 4000     # each estimate averages 10 samples; 4000 independent estimates


def f(z):
    return z * z


def estimates(method, generator):
    """REPEATS independent n-sample estimates of d/dmu E[f(z)], as a NumPy array."""
    # One copy of mu per repeat: the repeats are independent, so one backward pass gives them all.
    mu = sg.tensor(np.full(REPEATS, MU), requires_grad=True)
    q = Normal(mu, sg.tensor(np.full(REPEATS, SIGMA)))
    if method == "pathwise":
        z = q.rsample((N_SAMPLES,), generator=generator)      # z = mu + sigma * eps: depends on mu
        surrogate = f(z).mean(axis=0)
    else:
        z = q.sample((N_SAMPLES,), generator=generator)       # a constant for autograd
        surrogate = (f(z) * q.log_prob(z)).mean(axis=0)       # its gradient is f(z) d log q / dmu
    g, = sg.grad(surrogate.sum(), mu)
    return g.numpy()


exact = 2 * MU
per_sample = {"pathwise": 4 * SIGMA ** 2,
              "score function": MU ** 4 / SIGMA ** 2 + 14 * MU ** 2 + 15 * SIGMA ** 2}
gen = sg.Generator(0)
print(f"d/dmu E[z^2] with z ~ N({MU}, {SIGMA}^2): exact {exact}; {REPEATS} estimates of {N_SAMPLES} samples each")
variance = {}
for method in ("pathwise", "score function"):
    g = estimates(method, gen)
    variance[method] = g.var(ddof=1)
    std_error = g.std(ddof=1) / math.sqrt(REPEATS)
    predicted = per_sample[method] / N_SAMPLES
    print(f"  {method:15s} mean {g.mean():7.4f} (exact {exact}, {abs(g.mean() - exact) / std_error:.1f} std errors off)"
          f"   variance {variance[method]:7.3f} (theory {predicted:.3f})")
    # Unbiased: the average of many estimates sits on the exact value, within sampling noise.
    assert abs(g.mean() - exact) < 5 * std_error, method
    # The measured variance agrees with the closed form (loose bound: a variance is itself noisy).
    assert abs(variance[method] / predicted - 1) < 0.25, method

ratio = variance["score function"] / variance["pathwise"]
print(f"score-function variance / pathwise variance = {ratio:.1f}")
assert ratio > 3   # same expectation, far noisier: why the VAE backpropagates through the sample
print("both unbiased, the pathwise estimator has the lower variance: OK")
