"""NADE (Larochelle & Murray 2011): 500 sigmoid hidden units, one fixed (natural) ordering, on
Larochelle's fixed binarized MNIST."""
from .recipe import Recipe

RECIPE = Recipe(
    name="nade_mnist", model="nade",
    settings=dict(epochs=25),
    metric="test_nll", expected=88.52, tolerance=0.3, higher_is_better=False, unit="nats",
    paper=88.86, paper_source="Larochelle & Murray 2011, Table 2: NADE, 500 hidden units, fixed order",
    data="binarized MNIST, Larochelle's fixed binarization, 50k/10k/10k; exact test NLL (the sum of the conditionals)",
    budget="25 epochs of Adam 1e-3, batch 100, best validation epoch (the paper's SGD ran to convergence)",
    cpu_minutes=20, gpu_minutes=None,
    measured="88.52 nats (valid 89.27, best epoch 25, still falling): `scratchgen train nade --epochs 25 --threads 1` "
             "(10 epochs, then `--resume --epochs 25`); 2-core Xeon, 19.7 min of epochs, cores shared, 2026-12-05",
    docs="docs/models/nade.md",
    smoke=dict(epochs=1, hidden=8, limit_train=256, limit_eval=128),
)
