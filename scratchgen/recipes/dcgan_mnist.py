"""DCGAN on MNIST at a short budget: the convolutional GAN family's check."""
from .recipe import Recipe

RECIPE = Recipe(
    name="dcgan_mnist", model="dcgan",
    settings=dict(epochs=3, parzen_samples=0),
    metric="test_fid", expected=93.5, tolerance=25.0, higher_is_better=False, unit="FID",
    paper=None, paper_source="Radford et al. 2016 report no MNIST number",
    data="MNIST 50k/10k/10k in [-1, 1]; FID against the test digits",
    budget="3 epochs, best validation FID",
    cpu_minutes=10, gpu_minutes=None,
    measured="FID 93.5, IS 6.53: `scratchgen reproduce dcgan_mnist`, 2-core Xeon, default threads, 15.1 min "
             "while other jobs shared the cores, 2026-12-05 (first measured at 1 thread: FID 83.3, IS 6.55)",
    docs="docs/models/gan.md",
    smoke=dict(epochs=1, channels=8, limit_train=128, limit_eval=64, eval_samples=64),
)
