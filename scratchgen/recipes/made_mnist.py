"""MADE, one hidden layer of 500 units, one mask: `scratchgen train made`'s settings, seed 0."""
from .recipe import Recipe

RECIPE = Recipe(
    name="made_mnist", model="made",
    settings=dict(epochs=100, hidden=[500], natural_ordering=False, direct_connection=True,
                  weight_decay=1e-3, lr_step=90, patience=0),
    metric="test_nll", expected=90.97, tolerance=0.6, higher_is_better=False, unit="nats",
    paper=88.40, paper_source="Germain et al. 2015, Table 6: one hidden layer, one mask (their size search)",
    data="binarized MNIST, Larochelle's fixed 50k/10k/10k",
    budget="100 epochs, learning rate x0.1 at epoch 90, best validation epoch",
    cpu_minutes=15, gpu_minutes=3,
    measured="90.97 (best epoch 94): `scratchgen reproduce made_mnist`, 2-core Xeon, default threads, "
             "15.2 min, 2026-12-05 (first measured with the since-removed examples/made_mnist.py, session 4)",
    docs="docs/models/made.md",
    smoke=dict(epochs=1, hidden=[32], limit_train=256, limit_eval=128),
)
