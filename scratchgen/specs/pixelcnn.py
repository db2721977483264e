"""`scratchgen train pixelcnn` and `gated_pixelcnn`: the autoregressive image models of
scratchgen.models on Larochelle's binarized MNIST, exact test NLL in nats."""
import math

from ..data import load_binarized
from ..grad_mode import no_grad
from ..models.gated_pixelcnn import GatedPixelCNN
from ..models.pixelcnn import PixelCNN
from .registry import ModelSpec, register


class BinarizedMNISTAutoregressiveSpec(ModelSpec):
    """Training and evaluation on Larochelle's binarized MNIST (50k/10k/10k): NLL in nats per image."""

    dataset = "binarized_mnist"
    monitor = ("valid_nll", "min")
    patience = 10
    n_samples = 16

    def describe_data(self):
        """Which binarized MNIST was loaded: Larochelle's file, or the bundled fallback named as such."""
        from ..data import describe_binarized_mnist_source
        return describe_binarized_mnist_source()

    def _split(self, split):
        x = load_binarized(split, limit=self.config.get("limit_train" if split == "train" else "limit_eval"))
        return x.reshape(len(x), 1, 28, 28)

    def train_dataset(self):
        return (self._split("train"),)

    def loss(self, model, batch):
        return model.nll(batch[0]).mean()

    @no_grad()
    # 100 images at a time: the window matrices of a batch of 500 run to hundreds of MB, which
    # cost fresh pages on every call, where 100 stay in the heap.
    def evaluate(self, model, split, batch=100):
        from ..progress import progress
        x = self._split(split)
        chunks = progress(range(0, len(x), batch), total=-(-len(x) // batch), desc=f"{split} NLL")
        total = sum(float(model.nll(x[i:i + batch]).sum().item()) for i in chunks)
        return {f"{split}_nll": total / len(x)}

    def sample(self, model, n, path):
        from ..plots import image_grid
        images = model.sample(n, seed=self.config["seed"]).numpy()
        return image_grid(images.reshape(n, 28, 28), path, nrow=int(math.ceil(math.sqrt(n))),
                          title=f"{self.name}: samples")


@register("pixelcnn")
class PixelCNNSpec(BinarizedMNISTAutoregressiveSpec):
    description = "PixelCNN (van den Oord et al. 2016) on binarized MNIST: exact test NLL in nats"
    defaults = dict(epochs=20, batch_size=64, lr=1e-3, channels=64, blocks=7, out_channels=64)

    def build(self):
        c = self.config
        return PixelCNN(1, c["channels"], c["blocks"], out_channels=c["out_channels"])


@register("gated_pixelcnn")
class GatedPixelCNNSpec(BinarizedMNISTAutoregressiveSpec):
    description = "Gated PixelCNN (van den Oord et al. 2016b; no blind spot) on binarized MNIST: exact test NLL"
    defaults = dict(epochs=20, batch_size=64, lr=1e-3, channels=32, layers=8, out_channels=64)

    def build(self):
        c = self.config
        return GatedPixelCNN(c["channels"], c["layers"], out_channels=c["out_channels"])
