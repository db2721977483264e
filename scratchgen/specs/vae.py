"""`scratchgen train vae` and `conv_vae`: the VAEs of scratchgen.models.vae and conv_vae on binarized MNIST: test ELBO, and
the IWAE bound on the test NLL with iwae_k > 0; samples, reconstructions, interpolations and the
latent space as pictures (vae_pictures.py)."""
import math

import numpy as np

from ..data import load_binarized, load_mnist, to_unit
from ..models.conv_vae import ConvVAE
from ..models.vae import VAE, evaluate_elbo, evaluate_iwae
from .registry import ModelSpec, register


def load_split(split, likelihood="bernoulli", binarization="fixed", seed=12345, limit=None):
    """Data for one split as float32 (N, 784).

    bernoulli + 'fixed': Larochelle's binarized MNIST (50k/10k/10k; no labels, no bundled copy).
    bernoulli + 'dynamic': MNIST intensities in [0, 1] for 'train' (binarize each batch afresh),
        one fixed Bernoulli draw (seeded) for valid/test. Works with the bundled MNIST subset.
    gaussian: MNIST intensities in [0, 1].
    With `limit`, the first `limit` rows only (the same rows as slicing the full split)."""
    if likelihood == "bernoulli" and binarization == "fixed":
        return load_binarized(split, limit=limit)
    if binarization not in ("fixed", "dynamic"):
        raise ValueError(f"binarization must be 'fixed' or 'dynamic', got {binarization!r}")
    images = load_mnist(split, limit=limit)[0]
    x = to_unit(images).reshape(len(images), -1).astype(np.float32)
    if likelihood == "bernoulli" and split != "train":
        x = (np.random.default_rng(seed).random(x.shape) < x).astype(np.float32)
    return x


@register("vae")
class VAESpec(ModelSpec):
    description = "VAE (Kingma & Welling) on binarized MNIST: test ELBO, and IWAE NLL with iwae_k > 0"
    dataset = "binarized_mnist"
    # A run of about a minute on two cores (the README's main job); the vae_iwae recipe trains longer
    # and bounds the NLL with k = 5000.
    defaults = dict(epochs=30, batch_size=100, lr=1e-3, hidden=[500, 500], latent=50, likelihood="bernoulli",
                    sigma=None, kl="analytic", beta=1.0, warmup_steps=0, activation="relu",
                    binarization="fixed", iwae_k=50, iwae_splits=["test"], iwae_batch=None)
    monitor = ("valid_elbo", "max")
    patience = 30
    eval_batch = 1000   # examples per ELBO evaluation pass

    def build(self):
        c = self.config
        self.noise = np.random.default_rng(c["seed"] + 1)
        return VAE(784, c["hidden"], c["latent"], likelihood=c["likelihood"], sigma=c.get("sigma"), kl=c["kl"],
                   beta=c["beta"], warmup_steps=c["warmup_steps"], activation=c["activation"])

    def describe_data(self):
        c = self.config
        if c["likelihood"] == "bernoulli" and c["binarization"] == "fixed":
            from ..data import describe_binarized_mnist_source
            return describe_binarized_mnist_source()
        from ..data import describe_mnist_source
        how = "dynamically binarized" if c["likelihood"] == "bernoulli" else "grayscale in [0, 1]"
        return f"{describe_mnist_source()} ({how})"

    def _split(self, split):
        c = self.config
        try:
            return load_split(split, c["likelihood"], c["binarization"],
                              limit=c.get("limit_train" if split == "train" else "limit_eval"))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e} Or train on dynamically binarized MNIST, which works offline on the "
                                    f"bundled subset: --set binarization=dynamic") from None

    def train_dataset(self):
        return (self._split("train"),)

    def _dynamic(self):
        c = self.config
        return c["likelihood"] == "bernoulli" and c["binarization"] == "dynamic"

    def loss(self, model, batch):
        x, = batch
        if self._dynamic():  # a fresh binarization of every batch
            if not hasattr(self, "noise"):
                self.noise = np.random.default_rng(self.config["seed"] + 1)
            x = (self.noise.random(x.shape) < x.numpy()).astype(np.float32)
        return model.training_loss(x)

    def training_state(self, model):
        return {"noise": self.noise.bit_generator.state} if self._dynamic() and hasattr(self, "noise") else {}

    def load_training_state(self, model, state):
        if "noise" in state:
            self.noise = np.random.default_rng(self.config["seed"] + 1)
            self.noise.bit_generator.state = state["noise"]

    def evaluate(self, model, split):
        x = self._split(split)
        metrics = {f"{split}_elbo": evaluate_elbo(model, x, batch=self.eval_batch)}
        k = int(self.config.get("iwae_k") or 0)
        if k > 0 and split in (self.config.get("iwae_splits") or ["test"]):
            metrics[f"{split}_nll_iwae"] = -evaluate_iwae(model, x, k=k, batch=self.config.get("iwae_batch"))
            metrics["iwae_k"] = k
        return metrics

    def sample(self, model, n, path):
        from ..plots import image_grid
        images = model.sample(n, mean=True).numpy().reshape(n, 28, 28)
        return image_grid(images, path, nrow=int(math.sqrt(n)))

    def visualize(self, model, out_dir, n=None):
        """samples.png, reconstructions.png, interpolations.png, latent_scatter.png (codes of
        labelled MNIST test digits) and, for a 2-D latent space, manifold.png (vae_pictures.py)."""
        from .vae_pictures import draw_vae_pictures
        images, labels = load_mnist("test")
        n_labelled = min(len(images), 5000)
        xl = to_unit(images[:n_labelled]).reshape(n_labelled, -1).astype(np.float32)
        if self.config["likelihood"] == "bernoulli":  # binarized like the model's inputs (a fixed draw)
            xl = (np.random.default_rng(12345).random(xl.shape) < xl).astype(np.float32)
        paths = draw_vae_pictures(model, self._split("test"), (xl, labels[:n_labelled]), out_dir,
                                  seed=self.config["seed"])
        return paths["samples"]


@register("conv_vae")
class ConvVAESpec(VAESpec):
    description = "convolutional VAE on binarized MNIST (conv encoder, transposed-conv decoder)"
    defaults = dict(VAESpec.defaults, hidden=256, latent=50, epochs=100)
    patience = 10
    eval_batch = 100    # a conv layer's window matrix for 1000 images runs to hundreds of MB

    def build(self):
        c = self.config
        return ConvVAE(c["latent"], c["hidden"], likelihood=c["likelihood"], sigma=c.get("sigma"), kl=c["kl"],
                       beta=c["beta"], warmup_steps=c["warmup_steps"])
