"""`scratchgen train realnvp`: RealNVP (scratchgen.models.realnvp) on dequantized MNIST images,
test negative log-likelihood in nats and bits/dim."""
import math

import numpy as np

from ..data import dequantize, first_rows, load_mnist
from ..grad_mode import no_grad
from ..models.realnvp import RealNVP, bits_per_dim
from ..tensor import Tensor
from .finite_samples import finite_samples
from .registry import ModelSpec, NoiseState, register

EVAL_CHUNK = 100  # images per evaluation forward pass: bounds the memory of the activations


@register("realnvp")
class RealNVPSpec(NoiseState, ModelSpec):
    description = "RealNVP (multi-scale affine couplings, actnorm) on dequantized MNIST, test NLL and bits/dim"
    dataset = "mnist"
    defaults = dict(epochs=10, batch_size=64, lr=1e-3, scales=2, channels=32, blocks=1, couplings=2,
                    temperature=1.0)
    monitor = ("valid_nll", "min")
    setting_help = {
        "scales": "scales of the multi-scale flow (each but the last: couplings, squeeze, couplings, factor out half)",
        "channels": "feature channels of the coupling networks' convolutions",
        "blocks": "residual blocks per coupling network",
        "couplings": "coupling layers per group (checkerboard, then channel-wise; the last scale has one more)",
        "temperature": "standard deviation of z when drawing samples.png (1: the model's density)",
    }

    def make_model(self):
        c = self.config
        return RealNVP((1, 28, 28), scales=c["scales"], channels=c["channels"], blocks=c["blocks"],
                       couplings=c["couplings"])

    def build(self):
        temperature = self.config.get("temperature", 1.0)
        if not temperature > 0:   # checked now, not after training when samples.png is drawn
            raise ValueError(f"temperature must be positive (the standard deviation of z in samples.png), "
                             f"got {temperature}")
        # Dequantization noise has its own stream, saved in training_state, so --resume replays it.
        self.noise = np.random.default_rng(self.config["seed"] + 1)
        return self.make_model()

    def _images(self, split):
        return load_mnist(split)[0][:, None]   # uint8 (N, 1, 28, 28)

    def train_dataset(self):
        return first_rows(self.config.get("limit_train"), self._images("train"))

    def loss(self, model, batch):
        x = Tensor(dequantize(batch[0].numpy(), self.noise))   # fresh noise every batch
        return -model.log_prob(x).mean()

    def evaluate(self, model, split):
        images, = first_rows(self.config.get("limit_eval"), self._images(split))
        x = dequantize(images, np.random.default_rng(12345))   # one fixed draw: comparable across epochs
        with no_grad():
            ll = sum(float(model.log_prob(x[i:i + EVAL_CHUNK]).sum().item())
                     for i in range(0, len(x), EVAL_CHUNK)) / len(x)
        return {f"{split}_nll": -ll, f"{split}_bits_per_dim": bits_per_dim(ll, dim=x[0].size)}

    def sample(self, model, n, path):
        from ..plots import image_grid
        t = self.config["temperature"]
        images = finite_samples(lambda: model.sample(n, temperature=t).numpy().reshape(n, 28, 28), path,
                                f"Train longer, or draw at a lower temperature than {t}: "
                                f"scratchgen sample RUN --set temperature=0.5")
        return image_grid(np.clip(images, 0, 1), path, nrow=int(math.sqrt(n)))
