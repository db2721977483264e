"""PixelVAE (Gulrajani et al. 2017) on Larochelle's binarized MNIST: a conv encoder and a 4-layer
Gated PixelCNN decoder conditioned on z through upsampled feature maps, free bits against posterior
collapse; the number is the test ELBO, a bound on the log-likelihood (the IWAE bound with k = 5000
costs about half a minute of CPU per test digit: bench/RESULTS.md has it for the first 100)."""
from .recipe import Recipe

RECIPE = Recipe(
    name="pixelvae_mnist", model="pixelvae",
    settings=dict(epochs=2, free_bits=0.25, eval_k=0),
    metric="test_elbo", expected=-88.64, tolerance=1.0, higher_is_better=True, unit="nats",
    paper=-79.66, paper_source="Gulrajani et al. 2017, Table 1: PixelVAE's NLL on binarized MNIST (a GPU budget)",
    data="binarized MNIST, Larochelle's fixed binarization, 50k/10k/10k; the ELBO on all 10k test digits",
    budget="2 epochs of Adam 1e-3, batch 64, free bits 0.25 nats per latent dimension; the same decoder alone "
           "(a 4-layer Gated PixelCNN) gets an exact 94.22 in the same 2 epochs",
    cpu_minutes=38, gpu_minutes=None,
    measured="test ELBO -88.64 (KL 7.97, valid ELBO -89.16, best epoch 2): `scratchgen train pixelvae --epochs 2 "
             "--set free_bits=0.25 --set eval_k=0 --threads 1`; 2-core Xeon, 37 min of epochs while another job "
             "shared the cores, 2026-12-06",
    docs="docs/models/pixelvae.md",
    smoke=dict(epochs=1, latent=2, hidden=8, channels=4, layers=2, out_channels=4, maps=2, limit_train=128,
               limit_eval=64),
)
