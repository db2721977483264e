"""MADE's masks make an autoencoder autoregressive: its Jacobian is strictly lower-triangular.

MADE (Germain et al. 2015) gives input d a degree m(d) (its position in the ordering) and every
hidden unit k a degree m(k) in [1, D-1], and keeps only the weights that respect the degrees:

    hidden masks   M[k, j] = 1  iff  m(k) >= m(j)
    output mask    M[d, k] = 1  iff  m(d) >  m(k)        (strict: output d never sees x_d)

So logit_d depends only on inputs earlier in the ordering, and p(x) = prod_d p(x_d | x_<d).
Here we *measure* that with autograd: J[d, j] = d logit_d / d x_j, one backward pass per
output (`sg.linalg.jacobian`). Rows and columns put in the autoregressive order, J must be
strictly lower-triangular, and its nonzeros must lie where the product of the masks has a path.

    python examples/made_mask_jacobian.py
"""
import numpy as np

import scratchgen as sg
from scratchgen.models import MADE

sg.manual_seed(0)                           # the weights; the masks come from seed=3 below
D = 6
# A random ordering, so the triangle only appears once the ordering is undone.
made = MADE(D, hidden_sizes=[12, 12], natural_ordering=False, seed=3, dtype=sg.float64)
order = made.ordering                        # input indices in the order they are generated
print("ordering (generated first .. last):", order.tolist())


def grid(a):
    return "\n".join("    " + " ".join("#" if v else "." for v in row) for row in a)


degrees = made.degrees(made.mask_index)     # [inputs, hidden layer 1, hidden layer 2]
print("input degrees:", degrees[0].tolist(), " last hidden layer's degrees:", degrees[-1].tolist())
# The masks are 0/1 buffers of the MaskedLinear layers; one row per output unit.
masks = [layer.mask.numpy() for layer in made.layers]
for i, m in enumerate(masks):
    print(f"mask of layer {i + 1}, shape {m.shape} (out x in), {int(m.sum())} of {m.size} weights kept")
print("output mask, outputs in the autoregressive order, hidden units by degree: a staircase")
print(grid(masks[-1][np.ix_(order, np.argsort(degrees[-1], kind="stable"))]))

# Paths from input j to output d: the product of the masks counts them.
paths = masks[2] @ masks[1] @ masks[0]

# The Jacobian of the logits w.r.t. one input vector x, with autograd.
x = sg.tensor(np.random.default_rng(0).random(D))
J = sg.linalg.jacobian(lambda v: made(v.reshape(1, D)).reshape(D), x).numpy()
print("|J| in the inputs' order (rows: outputs d, columns: inputs j):")
print(grid(np.abs(J) > 0))

J_ordered = J[np.ix_(order, order)]
print("the same, rows and columns in the autoregressive order:")
print(grid(np.abs(J_ordered) > 0))
print("paths from input to output through the masks (mask3 @ mask2 @ mask1 > 0), same order:")
print(grid(paths[np.ix_(order, order)] > 0))

# The claims: no output depends on itself or on a later input, and autograd finds no dependency
# the masks do not allow (a ReLU that happens to be off may hide an allowed one: never the reverse).
assert np.all(np.triu(J_ordered) == 0), "an output depends on itself or on a later input"
assert np.all(J[paths == 0] == 0)
assert np.count_nonzero(J_ordered) > 0
print(f"{np.count_nonzero(J)} nonzero entries, {np.count_nonzero(paths)} with a path through the masks, "
      f"{D * (D - 1) // 2} below the diagonal; every other entry exactly 0")
print("Jacobian strictly lower-triangular in the autoregressive order: OK")
