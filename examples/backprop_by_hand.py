"""Backpropagation by hand: the chain rule for a 2-layer MLP, checked against scratchgen's autograd.

    h = tanh(x W1^T + b1),   y = h W2^T + b2,   L = 1/N sum_n ||y_n - t_n||^2

Going backwards, every gradient is the upstream gradient times one local derivative:

    dL/dy  = 2 (y - t) / N
    dL/dW2 = (dL/dy)^T h                dL/db2 = sum_n dL/dy
    dL/dh  = (dL/dy) W2
    dL/da  = dL/dh * (1 - h^2)          (a = x W1^T + b1, and tanh' = 1 - tanh^2)
    dL/dW1 = (dL/da)^T x                dL/db1 = sum_n dL/da

`loss.backward()` does the same walk over the recorded graph and leaves each result in `p.grad`.
Finally `sg.gradcheck` compares autograd with central finite differences, (L(w+e) - L(w-e)) / 2e.

    python examples/backprop_by_hand.py
"""
import numpy as np

import scratchgen as sg
from scratchgen import nn

sg.manual_seed(0)
rng = np.random.default_rng(0)
N, D_in, H, D_out = 16, 3, 5, 2
x = rng.standard_normal((N, D_in))
t = rng.standard_normal((N, D_out))

# float64 everywhere, so the two computations can agree to rounding error.
layer1 = nn.Linear(D_in, H, dtype=sg.float64)
layer2 = nn.Linear(H, D_out, dtype=sg.float64)
W1, b1, W2, b2 = (p.data for p in (layer1.weight, layer1.bias, layer2.weight, layer2.bias))

# --- 1. by hand, in plain NumPy -------------------------------------------------------------
a = x @ W1.T + b1
h = np.tanh(a)
y = h @ W2.T + b2
loss_np = np.sum((y - t) ** 2) / N

dy = 2 * (y - t) / N
dW2, db2 = dy.T @ h, dy.sum(axis=0)
dh = dy @ W2
da = dh * (1 - h ** 2)
dW1, db1 = da.T @ x, da.sum(axis=0)
by_hand = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

# --- 2. the same forward pass with scratchgen tensors; backward() fills p.grad ---------------
loss = ((layer2(layer1(sg.tensor(x)).tanh()) - sg.tensor(t)) ** 2).sum() / N
loss.backward()
autograd = {"W1": layer1.weight.grad, "b1": layer1.bias.grad, "W2": layer2.weight.grad, "b2": layer2.bias.grad}

print(f"loss: by hand {loss_np:.12f}, scratchgen {loss.item():.12f}")
assert abs(loss.item() - loss_np) < 1e-12
for name, g in by_hand.items():
    err = np.max(np.abs(autograd[name].numpy() - g))
    print(f"dL/d{name:2s} shape {str(g.shape):7s} max |by hand - autograd| = {err:.1e}")
    assert err < 1e-12, name


# --- 3. finite differences: gradcheck perturbs every weight and compares -------------------------
def mlp_loss(W1, b1, W2, b2):
    out = (sg.tensor(x) @ W1.T + b1).tanh() @ W2.T + b2
    return ((out - sg.tensor(t)) ** 2).sum() / N


assert sg.gradcheck(mlp_loss, [W1, b1, W2, b2])   # raises GradcheckError naming the entry if wrong
print("sg.gradcheck: autograd matches central finite differences for W1, b1, W2, b2")
print("backprop by hand == autograd: OK")
