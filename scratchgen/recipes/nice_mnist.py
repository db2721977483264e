"""NICE on dequantized MNIST with the paper's architecture and Adam, S started from the data and
the weights averaged: above the paper's log-likelihood."""
from .recipe import Recipe

RECIPE = Recipe(
    name="nice_mnist", model="nice",
    settings=dict(epochs=70, scale_init="data", ema=0.9995, patience=0),
    metric="test_ll", expected=2010.0, tolerance=5.0, higher_is_better=True, unit="nats",
    paper=1980.50, paper_source="Dinh et al. 2015, Table 2 (MNIST log-likelihood)",
    data="MNIST 50k/10k/10k, dequantized (x + U[0,1)) / 256",
    budget="70 epochs, EMA 0.9995 validated and tested",
    cpu_minutes=50, gpu_minutes=None,
    measured="2010.0 nats = 4.301 bits/dim, 2-core Xeon, 1 thread, 105 min, the since-removed examples/nice_mnist.py with these settings "
             "(session 8); the PyTorch twin: 2011.18",
    docs="docs/models/nice.md",
    smoke=dict(epochs=1, hidden=32, hidden_layers=1, limit_train=256, limit_eval=128),
)
