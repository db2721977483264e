"""MADE, one hidden layer of 3000 units, one mask, weights averaged: the best single-mask MADE here."""
from .recipe import Recipe

RECIPE = Recipe(
    name="made_best", model="made",
    settings=dict(epochs=100, hidden=[3000], natural_ordering=True, direct_connection=True,
                  weight_decay=2e-3, lr_step=90, ema=0.999, patience=0),
    metric="test_nll", expected=87.74, tolerance=0.3, higher_is_better=False, unit="nats",
    paper=88.40, paper_source="Germain et al. 2015, Table 6: one hidden layer, one mask",
    data="binarized MNIST, Larochelle's fixed 50k/10k/10k",
    budget="100 epochs, learning rate x0.1 at epoch 90, EMA 0.999 validated and tested",
    cpu_minutes=60, gpu_minutes=None,
    measured="87.74 (seed 0; seed 1: 87.71), 2-core Xeon, 1 thread, the since-removed examples/made_mnist.py with these settings (session 5)",
    docs="docs/models/made.md",
    smoke=dict(epochs=1, hidden=[32], limit_train=256, limit_eval=128),
)
