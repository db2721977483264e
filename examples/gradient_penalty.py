"""WGAN-GP's gradient penalty: a loss made of a gradient, so training it needs a double backward.

WGAN-GP (Gulrajani et al. 2017) keeps the critic D close to 1-Lipschitz by penalising its
input-gradient norm at random points between real and generated samples:

    x_hat = eps * x_real + (1 - eps) * x_fake,   eps ~ U[0, 1] per example
    GP(theta) = mean_n ( ||grad_x D_theta(x_hat_n)||_2 - 1 )^2

The inner gradient is taken with `sg.grad(..., create_graph=True)`, so it is itself a graph that
depends on the critic's weights theta; `GP.backward()` then differentiates through it (a
gradient of a gradient). We check dGP/dtheta against central finite differences,
(GP(theta + e) - GP(theta - e)) / 2e, for every weight of a tiny critic.

    python examples/gradient_penalty.py
"""
import numpy as np

import scratchgen as sg
from scratchgen import nn

sg.manual_seed(0)
rng = np.random.default_rng(0)
N, D = 8, 2
# A smooth critic (tanh, not ReLU), so the finite differences see a smooth function.
critic = nn.Sequential(nn.Linear(D, 6, dtype=sg.float64), nn.Tanh(), nn.Linear(6, 6, dtype=sg.float64), nn.Tanh(),
                       nn.Linear(6, 1, dtype=sg.float64))
real = sg.tensor(rng.normal(2.0, 0.5, (N, D)))
fake = sg.tensor(rng.normal(-1.0, 1.0, (N, D)))
eps = sg.tensor(rng.random((N, 1)))        # fixed, so the penalty is a deterministic function of theta


def penalty(create_graph):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_()   # a leaf: we differentiate w.r.t. it
    scores = critic(x_hat)
    # Sum over the batch: example n's score depends only on x_hat_n, so this gives every row's gradient.
    g, = sg.grad(scores.sum(), x_hat, create_graph=create_graph)
    norm = (g * g).sum(axis=1).sqrt()
    return ((norm - 1) ** 2).mean(), norm


gp, norm = penalty(create_graph=True)
print(f"critic gradient norms at x_hat: {np.round(norm.detach().numpy(), 3).tolist()}")
print(f"gradient penalty GP = {gp.item():.6f}")
assert gp.requires_grad              # the penalty is still connected to theta through the gradient
gp.backward()                        # the double backward: through grad_x D back to theta
# The output bias shifts D but not its slope, so GP does not depend on it: autograd leaves its
# .grad at None (as PyTorch does), and finite differences must find exactly 0 there.
names = [name for name, p in critic.named_parameters() if p.grad is None]
print(f"parameters GP does not depend on (grad None): {names}")
analytic = [np.zeros(p.shape) if p.grad is None else p.grad.numpy().copy() for p in critic.parameters()]

# Finite differences, one weight at a time; the inner gradient needs no graph here.
h, worst = 1e-6, 0.0
for p, a in zip(critic.parameters(), analytic):
    numeric = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = p.data[i]                 # p.data is the NumPy array behind the parameter
        p.data[i] = old + h
        plus = penalty(create_graph=False)[0].item()
        p.data[i] = old - h
        minus = penalty(create_graph=False)[0].item()
        p.data[i] = old
        numeric[i] = (plus - minus) / (2 * h)
    worst = max(worst, np.max(np.abs(a - numeric)) / (1e-3 + np.max(np.abs(numeric))))

n_weights = sum(a.size for a in analytic)
print(f"dGP/dtheta for all {n_weights} critic weights: max relative difference to finite differences {worst:.1e}")
assert worst < 1e-6
assert any(np.abs(a).max() > 0 for a in analytic)   # a real, nonzero gradient was checked
print("double backward through the gradient penalty matches finite differences: OK")
