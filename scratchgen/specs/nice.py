"""`scratchgen train nice`: NICE (scratchgen.models.nice) on dequantized MNIST, test
log-likelihood in nats and bits/dim."""
import math

import numpy as np

from ..data import dequantize, first_rows, load_mnist
from ..grad_mode import no_grad
from ..models.nice import NICE, bits_per_dim
from ..tensor import Tensor
from .registry import ModelSpec, NoiseState, register


@register("nice")
class NICESpec(NoiseState, ModelSpec):
    description = "NICE (or RealNVP affine coupling) on dequantized MNIST, test LL in nats and bits/dim"
    dataset = "mnist"
    defaults = dict(epochs=20, batch_size=200, lr=1e-3, couplings=4, hidden=1000, hidden_layers=5,
                    coupling="additive", prior="logistic", scale_init="zero")
    monitor = ("valid_ll", "max")
    patience = 20

    def build(self):
        c = self.config
        self.noise = np.random.default_rng(c["seed"] + 1)
        model = NICE(784, c["couplings"], c["hidden"], c["hidden_layers"], c["prior"], c["coupling"])
        if c["scale_init"] == "data":   # a resumed or evaluated run then loads S with the rest
            first = self._images("train")[:1000]
            model.initialize_scale(dequantize(first, np.random.default_rng(c["seed"] + 2)))
        elif c["scale_init"] != "zero":
            raise ValueError(f"scale_init must be 'zero' or 'data', got {c['scale_init']!r}")
        return model

    def make_optimizer(self, model):
        from .. import optim
        # The paper's "beta2 = 0.01" is one minus the decay rate (early Adam drafts' notation).
        return optim.Adam(model.parameters(), lr=self.config["lr"], betas=(0.9, 0.99), eps=1e-4)

    def _images(self, split):
        images = load_mnist(split)[0]
        return images.reshape(len(images), -1)

    def train_dataset(self):
        return first_rows(self.config.get("limit_train"), self._images("train"))

    def loss(self, model, batch):
        x = Tensor(dequantize(batch[0].numpy(), self.noise))  # fresh noise every batch
        return -model.log_prob(x).mean()

    def evaluate(self, model, split):
        x = dequantize(self._images(split), np.random.default_rng(12345))  # one fixed draw
        x, = first_rows(self.config.get("limit_eval"), x)
        with no_grad():
            ll = sum(float(model.log_prob(x[i:i + 1000]).sum().item()) for i in range(0, len(x), 1000)) / len(x)
        return {f"{split}_ll": ll, f"{split}_bits_per_dim": bits_per_dim(ll)}

    def sample(self, model, n, path):
        from ..plots import image_grid
        images = np.clip(model.sample(n).numpy(), 0, 1).reshape(n, 28, 28)
        return image_grid(images, path, nrow=int(math.sqrt(n)))
