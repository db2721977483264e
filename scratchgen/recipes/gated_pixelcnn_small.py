"""A small Gated PixelCNN (no blind spot) trained for 1 epoch on a CPU; the PyTorch twin agrees to 0.01 nats."""
from .recipe import Recipe

RECIPE = Recipe(
    name="gated_pixelcnn_small", model="gated_pixelcnn",
    settings=dict(channels=16, layers=5, out_channels=32, epochs=1, patience=0),
    metric="test_nll", expected=98.06, tolerance=0.5, higher_is_better=False, unit="nats",
    paper=80.10, paper_source="Gated PixelCNN on binarized MNIST as tabled in the PixelVAE thesis (Table 2.1)",
    data="binarized MNIST, Larochelle's fixed 50k/10k/10k",
    budget="1 epoch of a 24,945-parameter model",
    cpu_minutes=35, gpu_minutes=None,
    measured="98.06 (PyTorch twin 98.06), 2-core Xeon, 1 thread, the since-removed examples/pixelcnn_mnist.py --model gated",
    docs="docs/models/pixelcnn.md",
    smoke=dict(epochs=1, channels=4, layers=2, out_channels=4, limit_train=64, limit_eval=32),
)
