"""`scratchgen train maf`: MAF (scratchgen.models.maf) on dequantized MNIST in logit space, or on a
2-D toy density with `--set data=two_moons` (any name of scratchgen.data.TOY_DATASETS).

MNIST, as in the paper (Section 4.2 / Appendix): pixels k in {0..255} are dequantized to
x = (k + u) / 256 in [0, 1), and the flow models y = logit(lambda + (1 - 2 lambda) x) with
lambda = 1e-6. Reported per image, in nats:

    {split}_ll_logit     log p(y): the density of the logit-space data, the convention of the
                         paper's Table 2 "test log-likelihood" (the number behind its -1300);
    {split}_ll           log p(x) = log p(y) + log|dy/dx|: the density of the dequantized pixels
                         x in [0, 1]^784 (the logit transform's log-det added), comparable with
                         `scratchgen train nice`'s {split}_ll;
    {split}_bits_per_dim from {split}_ll: (-log p(x) + 784 log 256) / (784 log 2), an upper bound
                         on the 8-bit data's code length (the usual image convention).

Toy data: {split}_ll is the log-density in nats per point of the 2-D data as drawn.
"""
import math

import numpy as np

from ..data import TOY_DATASETS, dequantize, first_rows, load_mnist, logit_inverse, logit_transform
from ..grad_mode import no_grad
from ..models.maf import MAF
from ..models.nice import bits_per_dim
from ..tensor import Tensor
from .finite_samples import finite_samples
from .registry import ModelSpec, NoiseState, register

LAMBDA = 1e-6   # the paper's logit-transform constant for MNIST


@register("maf")
class MAFSpec(NoiseState, ModelSpec):
    description = "MAF (masked autoregressive flow) on dequantized logit-space MNIST, or a 2-D toy set (data=...)"
    dataset = "mnist"
    # The paper's MAF (5) shape with one hidden layer per MADE; a smaller width than its 1024 keeps
    # an epoch on two cores short. Adam at 1e-4, batches of 100, L2 1e-6 as in its Appendix.
    defaults = dict(epochs=20, batch_size=100, lr=1e-4, weight_decay=1e-6, blocks=5, hidden=[512],
                    batch_norm=True, data="mnist", n_train=10000)
    monitor = ("valid_ll", "max")
    patience = 10
    setting_help = {
        "blocks": "Gaussian MADEs in the flow (each reverses the previous one's ordering)",
        "batch_norm": "the flow's batch normalization (with its log-det) between the MADEs",
        "data": "mnist (dequantized, logit space) or a 2-D toy set: two_moons, eight_gaussians, "
                "checkerboard, swiss_roll, twentyfive_gaussians",
        "n_train": "training points drawn from a toy distribution (data != mnist)",
    }

    @property
    def toy(self):
        name = self.config["data"]
        if name != "mnist" and name not in TOY_DATASETS:
            raise ValueError(f"data must be 'mnist' or one of {sorted(TOY_DATASETS)}, got {name!r}")
        return name != "mnist"

    def describe_data(self):
        if self.toy:
            return f"2-D toy set {self.config['data']} ({self.config['n_train']} training points)"
        return super().describe_data() + " (dequantized, logit space, lambda = 1e-6)"

    def build(self):
        c = self.config
        self.noise = np.random.default_rng(c["seed"] + 1)
        return MAF(2 if self.toy else 784, c["blocks"], c["hidden"], batch_norm=c["batch_norm"])

    # -- data ------------------------------------------------------------------------------------
    def _toy(self, split, n):
        offset = {"train": 0, "valid": 1, "test": 2}[split]
        return TOY_DATASETS[self.config["data"]](n, seed=self.config["seed"] * 3 + offset + 1000)[0]

    def _images(self, split):
        images = load_mnist(split)[0]
        return images.reshape(len(images), -1)

    def train_dataset(self):
        if self.toy:
            return first_rows(self.config.get("limit_train"), self._toy("train", self.config["n_train"]))
        return first_rows(self.config.get("limit_train"), self._images("train"))

    def _logit(self, pixels, rng):
        """(y, log|dy/dx|) for 8-bit pixels dequantized with rng's uniforms."""
        return logit_transform(dequantize(pixels, rng), LAMBDA)

    def loss(self, model, batch):
        x = batch[0]
        if not self.toy:   # fresh dequantization noise every batch; the log-det is constant in the weights
            x = Tensor(self._logit(x.numpy(), self.noise)[0])
        return -model.log_prob(x).mean()

    # -- scores ----------------------------------------------------------------------------------
    def _log_prob(self, model, x, chunk=1000):
        with no_grad():
            return np.concatenate([model.log_prob(x[i:i + chunk]).numpy().astype(np.float64)
                                   for i in range(0, len(x), chunk)])

    def evaluate(self, model, split):
        limit = self.config.get("limit_eval")
        if self.toy:
            x = self._toy(split, limit or 5000)
            return {f"{split}_ll": float(self._log_prob(model, x).mean())}
        pixels, = first_rows(limit, self._images(split))
        y, logdet = self._logit(pixels, np.random.default_rng(12345))   # one fixed dequantization
        ll_logit = self._log_prob(model, y)
        ll = float((ll_logit + logdet).mean())
        return {f"{split}_ll": ll, f"{split}_ll_logit": float(ll_logit.mean()),
                f"{split}_bits_per_dim": bits_per_dim(ll)}

    def sample(self, model, n, path):
        from ..plots import image_grid, scatter_2d
        if self.toy:
            return scatter_2d(model.sample(max(n, 1000)).numpy(), path=path, title=f"MAF samples ({self.config['data']})")
        images = finite_samples(lambda: logit_inverse(model.sample(n).numpy(), LAMBDA).reshape(n, 28, 28), path)
        return image_grid(np.clip(images, 0, 1), path, nrow=int(math.sqrt(n)))
