"""MAF (5): five Gaussian MADEs of one 1024-unit hidden layer, with batch norm between them, on
dequantized MNIST in logit space (Papamakarios et al. 2017, Section 4.2)."""
from .recipe import Recipe

RECIPE = Recipe(
    name="maf_mnist", model="maf",
    settings=dict(epochs=20, hidden=[1024]),
    metric="test_ll_logit", expected=-1245.7, tolerance=5.0, higher_is_better=True, unit="nats",
    paper=-1300.5, paper_source="Papamakarios et al. 2017, Table 2: MAF (5) on MNIST, test log-likelihood in logit space",
    data="MNIST 50k/10k/10k, dequantized (k + u) / 256, logit(1e-6 + (1 - 2e-6) x); the number is log p of the logit-space data",
    budget="20 epochs of Adam 1e-4, batch 100, L2 1e-6, best validation epoch (the paper trains to convergence with early stopping)",
    cpu_minutes=39, gpu_minutes=None,
    measured="-1245.7 nats (test bits/dim 1.790; valid -1249.1 at epoch 20): `scratchgen train maf --epochs 60 --set "
             "hidden=[1024] --threads 1` stopped after epoch 20, then `scratchgen evaluate`; 2-core Xeon, 1 thread, "
             "38.7 min of epochs while other jobs shared the cores, before Adam flushed subnormals, 2026-12-05",
    docs="docs/models/maf.md",
    smoke=dict(epochs=1, hidden=[16], limit_train=256, limit_eval=128),
)
