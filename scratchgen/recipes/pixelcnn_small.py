"""A small PixelCNN trained for 2 epochs on a CPU; the PyTorch twin lands within 0.1 nats."""
from .recipe import Recipe

RECIPE = Recipe(
    name="pixelcnn_small", model="pixelcnn",
    settings=dict(channels=32, blocks=5, out_channels=32, epochs=2, patience=0),
    metric="test_nll", expected=96.16, tolerance=0.5, higher_is_better=False, unit="nats",
    paper=81.30, paper_source="van den Oord et al. 2016a, Table 4 (a full-size model, GPU budget)",
    data="binarized MNIST, Larochelle's fixed 50k/10k/10k",
    budget="2 epochs of a 19,649-parameter model",
    cpu_minutes=40, gpu_minutes=None,
    measured="96.16 (PyTorch twin 96.26), 2-core Xeon, 1 thread, the since-removed examples/pixelcnn_mnist.py with these settings",
    docs="docs/models/pixelcnn.md",
    smoke=dict(epochs=1, channels=4, blocks=1, out_channels=4, limit_train=64, limit_eval=32),
)
