"""RealNVP (Dinh et al. 2017) on dequantized MNIST: the spec's small multi-scale flow (2 scales,
2 couplings per group, 32-channel ResNets of 1 block, actnorm), bits/dim of the 8-bit data."""
from .recipe import Recipe

RECIPE = Recipe(
    name="realnvp_mnist", model="realnvp",
    settings=dict(epochs=15),
    metric="test_bits_per_dim", expected=1.437, tolerance=0.03, higher_is_better=False, unit="bits/dim",
    paper=1.06, paper_source="Grathwohl et al. 2019 (FFJORD), Table 2: a full-size Real NVP on MNIST",
    data="MNIST 50k/10k/10k, dequantized (k + u) / 256, logit(0.05 + 0.9 x); every Jacobian counted",
    budget="15 epochs of Adam 1e-3, batch 64, best validation epoch (the small network; the published "
           "figure is a far larger flow trained for days on GPUs)",
    cpu_minutes=100, gpu_minutes=None,
    measured="1.4368 bits/dim (valid 1.4449, best epoch 15): `scratchgen train realnvp --epochs 40 --threads 1`, "
             "resumed exactly twice and stopped after epoch 15, then `scratchgen evaluate`; 2-core Xeon, 221 min "
             "of epochs while 2-8 other jobs shared the cores (a quiet 1-thread epoch is about 6.5 min), 2026-12-05",
    docs="docs/models/realnvp.md",
    smoke=dict(epochs=1, channels=4, limit_train=128, limit_eval=64),
)
