"""The conditional MLP GAN on MNIST (one-hot labels into G and D), D dropout and an EMA of G."""
from .recipe import Recipe

RECIPE = Recipe(
    name="cgan_mnist", model="cgan",
    settings=dict(epochs=100, label_smoothing=0.1, ema=0.999, d_dropout=0.5),
    metric="test_fid", expected=8.25, tolerance=2.0, higher_is_better=False, unit="FID",
    paper=None, paper_source="Mirza & Osindero 2014 report only a Parzen estimate (132 nats)",
    data="MNIST 50k/10k/10k in [-1, 1]; FID against the test digits",
    budget="100 epochs, best validation FID",
    cpu_minutes=25, gpu_minutes=None,
    measured="FID 8.25, IS 9.21, 2-core Xeon, the since-removed examples/cgan_mnist.py with these settings (session 5)",
    docs="docs/models/gan.md",
    smoke=dict(epochs=1, limit_train=256, limit_eval=128, eval_samples=128, parzen_samples=0),
)
