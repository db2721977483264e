"""`scratchgen train autoencoder`: the autoencoder and denoising autoencoder of
scratchgen.models.autoencoder on MNIST grey intensities in [0, 1] (not binarized).

    --set arch=mlp|conv                   the networks (MLP 784-512-256-32 and back by default)
    --set corruption=none|masking|gaussian   plain autoencoder, or denoising with masking noise
    --set noise=0.25                      (the fraction nu of zeroed pixels) or Gaussian noise (sigma)

Trained on the reconstruction cross-entropy of the clean input, selected on the validation BCE,
reported on the test split: test_bce (nats per image, summed over the 784 pixels), test_mse (the
squared error of z = sigmoid(a) against x, summed over the pixels, per image) and, for a
denoising autoencoder, test_denoising_bce (the BCE of the reconstruction of a corrupted test
image, one fixed draw of the noise, against the clean image).

An autoencoder has no prior to sample from: `sample` draws reconstructions of test digits, and
says so in the picture. `visualize` writes reconstructions.png and latent_scatter.png (the codes
of labelled test digits; the first two principal components when the code has more than 2 units).
"""
import os

import numpy as np

from ..grad_mode import no_grad
from ..models.autoencoder import CORRUPTIONS, Autoencoder, corrupt
from .mlp import mnist_arrays
from .registry import ModelSpec, NoiseState, register

EVAL_SEED = 12345  # the fixed corruption of the evaluation splits


@register("autoencoder")
class AutoencoderSpec(NoiseState, ModelSpec):
    description = ("autoencoder / denoising autoencoder (Vincent et al. 2008) on MNIST intensities: test "
                   "reconstruction BCE and MSE per image; `sample` draws reconstructions (no prior)")
    dataset = "mnist"
    defaults = dict(epochs=20, batch_size=100, lr=1e-3, arch="mlp", hidden=[512, 256], latent=32, channels=32,
                    activation="relu", corruption="none", noise=0.25)
    monitor = ("valid_bce", "min")
    patience = 10
    n_samples = 20
    setting_help = {
        "arch": "networks: mlp, or conv (two 4x4/2 convolutions, then the hidden layers; transposed convs back)",
        "latent": "size of the code y = f(x)",
        "channels": "channels of the first conv layer, twice as many in the second (arch=conv only)",
        "corruption": "input corruption q(x~|x): none (plain autoencoder), masking or gaussian (denoising)",
        "noise": "corruption level: the fraction of pixels zeroed (masking) or the noise's sigma (gaussian)",
    }

    def build(self):
        c = self.config
        if c["corruption"] not in CORRUPTIONS:
            raise ValueError(f"corruption must be one of {', '.join(CORRUPTIONS)}, got {c['corruption']!r}")
        self.noise = np.random.default_rng(c["seed"] + 1)
        return Autoencoder(784, c["hidden"], c["latent"], arch=c["arch"], channels=c["channels"],
                           activation=c["activation"])

    def describe_data(self):
        from ..data import describe_mnist_source
        return f"{describe_mnist_source()} (grey intensities in [0, 1], not binarized)"

    def _split(self, split):
        return mnist_arrays(split, limit=self.config.get("limit_train" if split == "train" else "limit_eval"))

    def train_dataset(self):
        return (self._split("train")[0],)

    def _corrupt(self, x, generator):
        return corrupt(x, self.config["corruption"], self.config["noise"], generator)

    def loss(self, model, batch):
        x, = batch
        if self.config["corruption"] == "none":
            return model.loss(x)
        if not hasattr(self, "noise"):
            self.noise = np.random.default_rng(self.config["seed"] + 1)
        return model.loss(x, self._corrupt(x.numpy(), self.noise))  # a fresh corruption of every batch

    @property
    def eval_batch(self):
        return 100 if self.config["arch"] == "conv" else 1000  # conv window matrices grow with the batch

    def evaluate(self, model, split):
        x = self._split(split)[0]
        bce = mse = 0.0
        with no_grad():
            for i in range(0, len(x), self.eval_batch):
                xb = x[i:i + self.eval_batch]
                bce += float(model.reconstruction_bce(xb).sum().item())
                mse += float(((model.reconstruct(xb).numpy() - xb) ** 2).sum())
            metrics = {f"{split}_bce": bce / len(x), f"{split}_mse": mse / len(x)}
            if self.config["corruption"] != "none":
                x_tilde = self._corrupt(x, np.random.default_rng(EVAL_SEED))
                denoising = sum(float(model.reconstruction_bce(x[i:i + self.eval_batch],
                                                               x_tilde[i:i + self.eval_batch]).sum().item())
                                for i in range(0, len(x), self.eval_batch))
                metrics[f"{split}_denoising_bce"] = denoising / len(x)
        return metrics

    def sample(self, model, n, path):
        """Reconstructions of the first n test digits (an autoencoder has no prior to sample from),
        in strips of up to 10: the digits and their reconstructions and, for a denoising
        autoencoder, the corrupted digits and what the model makes of them."""
        from ..plots import interpolation_strip
        x = self._split("test")[0][:max(1, int(n))]
        rows, labels = [], []
        denoising = self.config["corruption"] != "none"
        x_tilde = self._corrupt(x, np.random.default_rng(EVAL_SEED)) if denoising else None
        for i in range(0, len(x), 10):
            xb = x[i:i + 10]
            rows += [xb, model.reconstruct(xb).numpy()]
            labels += ["data", "recon"]
            if denoising:
                rows += [np.clip(x_tilde[i:i + 10], 0, 1), model.reconstruct(x_tilde[i:i + 10]).numpy()]
                labels += [self.config["corruption"], "denoised"]
        return interpolation_strip([r.reshape(-1, 28, 28) for r in rows], path, row_labels=labels,
                                   title="reconstructions of MNIST test digits, not samples (an autoencoder "
                                         "has no prior)")

    def visualize(self, model, out_dir, n=None):
        """reconstructions.png (see `sample`) and latent_scatter.png: the codes f(x) of up to 5,000
        labelled test digits, coloured by digit; PCA to 2-D when the code is larger. Returns the
        reconstructions' path."""
        from ..plots import scatter_2d
        from .vae_pictures import pca_2d
        path = self.sample(model, n or self.n_samples, os.path.join(out_dir, "reconstructions.png"))
        x, labels = mnist_arrays("test", limit=5000)
        codes = np.concatenate([model.encode(x[i:i + self.eval_batch]).numpy()
                                for i in range(0, len(x), self.eval_batch)])
        if codes.shape[1] == 2:
            points, title = codes, "codes f(x) of MNIST test digits"
        else:
            points, explained = pca_2d(codes)
            title = (f"codes f(x) of MNIST test digits ({codes.shape[1]}-D): first 2 principal components "
                     f"({explained:.0%} of variance)")
        scatter_2d(points, labels, os.path.join(out_dir, "latent_scatter.png"), title=title)
        return path
