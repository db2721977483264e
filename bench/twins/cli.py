#!/usr/bin/env python
"""PyTorch twins of `scratchgen train <model>` at its default settings: the whole run, not just steps.

    python bench/twins/cli.py MODEL --epochs 1 --out DIR [--limit-train N] [--limit-eval N]
                              [--batch-size N] [--lr F] [--seed N] [--patience N] [--threads N]
    python bench/twins/cli.py rbm ... [--cd-k K] [--persistent | --no-persistent]
        (= scratchgen train rbm --set cd_k=K --set persistent=true|false; CD-25 from the data:
         --cd-k 25 --no-persistent)

MODEL: made, vae, nice, gan, wgan_gp, dcgan, pixelcnn, gated_pixelcnn, rbm, nade. Data: full MNIST /
binarized MNIST when $SCRATCHGEN_DATA points at it, else the bundled subset, read by scratchgen's
own NumPy loaders (see runner.py). Every run does what cmd_train does (runner.run): config.json,
the epochs, validation after each, metrics.jsonl, best + last checkpoints (.pt), the test split,
samples.png and the model's other pictures, curves.png, results.json. Per model:

  made     784-500-784 MaskedLinear with a random ordering and the direct connection, one mask
           set; Adam(1e-3, weight_decay 1e-3), StepLR(90, 0.1); batch 100; valid/test NLL in
           chunks of 1000; 64 samples by the same O(nH)-per-pixel ancestral sampler.
  vae      784-500-500-(50, 50) / 50-500-500-784 ReLU, Bernoulli, analytic KL; Adam(1e-3); batch 100;
           logs elbo/kl/rec/beta; valid/test ELBO in chunks of 1000, the test IWAE bound (k=50); five
           figures (100 samples, reconstructions, interpolations, PCA scatter of 5,000 test codes).
  nice     4 additive couplings (5 x 1000 ReLU), logistic prior; Adam(1e-3, (0.9, 0.99), eps 1e-4);
           batch 200; fresh dequantization noise per batch; valid/test LL on one fixed draw.
  gan      MLP G 64-256-256-784 / D 784-256-256-1; Adam(2e-4, (0.5, 0.999)); batch 64; one D step
  wgan_gp  per G step (wgan_gp: Adam(1e-4, (0.5, 0.9)), batch 320 = 5 critic chunks of 64, penalty
  dcgan    10; dcgan: DCGAN G/D with BN, N(0, 0.02) init, latent 100). Each evaluation: D scores on
           1,000 real digits and 1,000 samples, FID of 5,000 samples against the split in the
           features of scratchgen's cached MNIST classifier (784-512-256-10, its weights run in
           torch); test adds the Inception Score (the samples embedded again, as scratchgen does)
           and a Parzen window of 10,000 samples (10 bandwidths on the validation digits, then
           the test digits). Pictures: samples.png, nearest_neighbours.png (8 samples against
           the 50,000 training digits), adversarial_curves.png.
  pixelcnn        PixelCNN 64 channels x 7 residual blocks / gated PixelCNN 32 x 8 layers, both
  gated_pixelcnn  with 64 output channels; Adam(1e-3); batch 64; valid/test NLL in chunks of 500;
                  16 samples, one forward pass per pixel.
  rbm      784-500 binary RBM: W ~ N(0, 0.01^2), c = 0, b = the smoothed logits of the training
           pixels' frequencies; PCD-1 (100 persistent chains started from base-rate pixels; CD-k /
           PCD-k with --cd-k, --no-persistent), the surrogate mean F(data) - mean F(negatives)
           through autograd; SGD(0.01, momentum 0.9), LinearLR to 0 over the run; batch 100.
           Validation (float64, chunks of 1000): valid_pseudo_nll (one flipped coordinate per
           example, the same fixed draw) and valid_recon_xent (mean-field reconstruction); it
           picks the best epoch, no early stopping. Test: both proxies, log Z by AIS (100 runs,
           the 14,500-step schedule from the base-rate model of the training data, float64,
           vectorised over runs), test_nll_ais and the conservative figure with log(Z + 3 sigma).
           samples.png: 100 fantasy particles (the persistent chains) after 1,000 Gibbs steps, the
           last step's p(v|h); filters.png: the first 100 rows of W. Checkpoints hold the chains
           and the Gibbs generator's state.
  nade     NADE 784-500 sigmoid, natural order (bench/torch_nade.py: the O(DH) pass as a cumsum
           over an (N, D, H) tensor, autograd backward; `python bench/torch_nade.py check`
           compares log p(x) and gradients with scratchgen's from the same weights); Adam(1e-3);
           batch 100; valid/test NLL in chunks of 100; patience 10; samples.png: 64 samples by
           ancestral sampling, O(nH) per pixel.

Known differences in the work done (everything else is the same computation):
  - Parzen window: torch.logsumexp over all 10,000 samples per bandwidth; scratchgen's kernel
    (scratchgen/kernels/parzen.py) skips the terms below exp(-50), the same value to float64
    rounding with fewer exponentials.
  - Checkpoints are torch.save files (.pt) holding the same states (model, optimizer, scheduler,
    loader position, RNG), written atomically and fsynced like scratchgen's .npz.
  - Random numbers come from torch / NumPy generators, not scratchgen's: the same amounts of
    noise, not the same values. Initial weights are torch's defaults (DCGAN: N(0, 0.02)).
  - No progress bar (cli_epoch.py runs scratchgen with --no-progress).
  - No finiteness check of every gradient before each step (scratchgen's gradient_step does one
    dot product per parameter).
  - rbm: sigmoid and softplus are torch's (scratchgen: (1 + tanh(x/2)) / 2 and max(x, 0) +
    log1p(exp(-|x|))); Bernoulli draws are torch.bernoulli (scratchgen compares host uniforms
    with p); base_rate_bias sums the 0/1 pixels with a float64 accumulator instead of converting
    the training set to float64 first; AIS reuses beta_k * pre for the hidden draw (scratchgen
    multiplies it again).
  - nade: autograd through the (N, D, H) cumsum (torch's own backward) where scratchgen runs a
    compiled O(NH)-memory loop with a hand-written backward (scratchgen/kernels/nade.py).
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runner import Twin, data, plots, run, sg_module  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

TWINS = {}


def twin(name):
    def register(cls):
        cls.name = name
        TWINS[name] = cls
        return cls
    return register


def _limit(x, n):
    return x[:n] if n else x


# -- MADE -------------------------------------------------------------------------------------------
class TwinMADE(tnn.Module):
    """torch_models.TorchMADE plus scratchgen MADE's random ordering and direct connection."""

    def __init__(self, D, hidden, natural_ordering, direct, seed):
        super().__init__()
        from torch_models import MaskedLinear
        sizes = [D] + list(hidden) + [D]
        self.layers = tnn.ModuleList([MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.direct = MaskedLinear(D, D, bias=False) if direct else None
        rng = np.random.default_rng([seed, 0])          # MADE.degrees(0)
        m = [np.arange(1, D + 1) if natural_ordering else rng.permutation(D) + 1]
        for h in hidden:
            m.append(rng.integers(min(m[-1].min(), D - 1), D, size=h))
        for layer, a, b in zip(self.layers[:-1], m[:-1], m[1:]):
            layer.set_mask(b[:, None] >= a[None, :])
        self.layers[-1].set_mask(m[0][:, None] > m[-1][None, :])
        if direct:
            self.direct.set_mask(m[0][:, None] > m[0][None, :])
        self.ordering = np.argsort(m[0])

    def forward(self, x):
        h = x
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        out = self.layers[-1](h)
        return out + self.direct(x) if self.direct is not None else out

    def log_prob(self, x):
        return -TF.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n, rng):
        """scratchgen MADE.sample's algorithm: the first layer's pre-activation updated per pixel."""
        W = [l.weight * l.mask for l in self.layers]
        b = [l.bias for l in self.layers]
        direct = self.direct.weight * self.direct.mask if self.direct is not None else None
        x = torch.zeros(n, W[0].shape[1])
        first = b[0].expand(n, -1).clone()
        for d in self.ordering:
            h = torch.relu(first)
            for w, bb in zip(W[1:-1], b[1:-1]):
                h = torch.relu(h @ w.T + bb)
            logit = h @ W[-1][d] + b[-1][d]
            if direct is not None:
                logit = logit + x @ direct[d]
            p = torch.sigmoid(logit).numpy()
            x_d = torch.from_numpy((rng.random(n) < p).astype(np.float32))
            x[:, d] = x_d
            first += x_d[:, None] * W[0][:, d]
        return x


@twin("made")
class MADETwin(Twin):
    defaults = dict(epochs=100, batch_size=100, lr=1e-3, hidden=[500], natural_ordering=False,
                    direct_connection=True, weight_decay=1e-3, lr_step=90)
    monitor = ("valid_nll", "min")
    patience = 15

    def build(self):
        c = self.config
        return TwinMADE(784, c["hidden"], c["natural_ordering"], c["direct_connection"], c["seed"])

    def make_optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=self.config["lr"], weight_decay=self.config["weight_decay"])

    def make_scheduler(self, optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, self.config["lr_step"], gamma=0.1)

    def train_dataset(self):
        return (_limit(data().load_binarized_mnist("train"), self.config.get("limit_train")),)

    def loss(self, model, batch):
        return -model.log_prob(batch[0]).mean()

    def evaluate(self, model, split):
        x = _limit(data().load_binarized_mnist(split), self.config.get("limit_eval"))
        total = sum(float(model.log_prob(torch.from_numpy(x[i:i + 1000])).sum().item())
                    for i in range(0, len(x), 1000))
        return {f"{split}_nll": -total / len(x)}

    def visualize(self, model, out):
        n = 64
        images = model.sample(n, np.random.default_rng(self.config["seed"])).numpy().reshape(n, 28, 28)
        plots().image_grid(images, os.path.join(out, "samples.png"), nrow=8)


# -- VAE --------------------------------------------------------------------------------------------
@twin("vae")
class VAETwin(Twin):
    defaults = dict(epochs=30, batch_size=100, lr=1e-3, hidden=[500, 500], latent=50, iwae_k=50)
    monitor = ("valid_elbo", "max")
    patience = 30

    def build(self):
        from torch_vae import TorchVAE
        c = self.config
        return TorchVAE(784, tuple(c["hidden"]), c["latent"])

    def _split(self, split):
        key = "limit_train" if split == "train" else "limit_eval"
        return _limit(data().load_binarized_mnist(split), self.config.get(key))

    def train_dataset(self):
        return (self._split("train"),)

    def loss(self, model, batch):
        x, = batch
        mu, sigma = model.encode(x)
        eps = torch.randn(mu.shape)
        z = mu + sigma * eps
        rec = -TF.binary_cross_entropy_with_logits(model.dec_out(model.decoder(z)), x, reduction="none").sum(-1)
        kl = (0.5 * (sigma * sigma + mu * mu) - 0.5 - sigma.log()).sum(-1)
        elbo = rec - kl
        model.steps += 1
        return {"loss": -elbo.mean(), "elbo": elbo.mean().detach(), "kl": kl.mean().detach(),
                "rec": rec.mean().detach(), "beta": 1.0}

    def evaluate(self, model, split):
        x = self._split(split)
        g = torch.Generator().manual_seed(0)
        total = 0.0
        for i in range(0, len(x), 1000):
            xb = torch.from_numpy(x[i:i + 1000])
            eps = torch.randn((len(xb), model.latent_dim), generator=g)
            total += float(model.elbo(xb, eps)[0].sum().item())
        metrics = {f"{split}_elbo": total / len(x)}
        k = int(self.config.get("iwae_k") or 0)
        if k and split == "test":   # as the spec: the IWAE bound on the test split (iwae_splits=["test"])
            from torch_vae import evaluate_iwae
            metrics["test_nll_iwae"] = -evaluate_iwae(model, x, k=k)
        return metrics

    def visualize(self, model, out):
        """vae_pictures.draw_vae_pictures for a 50-d latent space."""
        P, D = plots(), data()
        seed = self.config["seed"]
        mean = lambda z: torch.sigmoid(model.dec_out(model.decoder(z))).numpy()  # noqa: E731
        test = self._split("test")
        images, labels = D.load_mnist("test")
        nl = min(len(images), 5000)
        xl = D.to_unit(images[:nl]).reshape(nl, -1).astype(np.float32)
        xl = (np.random.default_rng(12345).random(xl.shape) < xl).astype(np.float32)
        g = torch.Generator().manual_seed(seed + 100)
        P.image_grid(mean(torch.randn((100, model.latent_dim), generator=g)), os.path.join(out, "samples.png"),
                     nrow=10, title="VAE samples: E[x|z], z ~ N(0, I)")
        x = test[:20]
        recon = mean(model.encode(torch.from_numpy(x))[0])
        half = len(x) // 2
        P.interpolation_strip([x[:half], recon[:half], x[half:2 * half], recon[half:2 * half]],
                              os.path.join(out, "reconstructions.png"), row_labels=["data", "recon", "data", "recon"])
        pairs = np.random.default_rng(seed).choice(len(test), size=(8, 2), replace=False)
        mu = model.encode(torch.from_numpy(test[pairs.reshape(-1)]))[0].numpy().reshape(8, 2, -1)
        t = np.linspace(0, 1, 10)[None, :, None]
        z = (1 - t) * mu[:, :1] + t * mu[:, 1:]
        ims = mean(torch.from_numpy(z.reshape(-1, model.latent_dim).astype(np.float32)))
        P.interpolation_strip(list(ims.reshape(8, 10, 28, 28)), os.path.join(out, "interpolations.png"),
                              title="linear interpolation between posterior means")
        codes = np.concatenate([model.encode(torch.from_numpy(xl[i:i + 1000]))[0].numpy()
                                for i in range(0, len(xl), 1000)])
        zc = codes - codes.mean(axis=0)
        _, s, vt = np.linalg.svd(zc, full_matrices=False)
        explained = (s[:2] ** 2).sum() / (s ** 2).sum()
        P.scatter_2d(zc @ vt[:2].T, labels[:nl], os.path.join(out, "latent_scatter.png"),
                     title=f"mu(x) of MNIST test digits, first 2 principal components ({explained:.0%} of variance)")


# -- NICE -------------------------------------------------------------------------------------------
@twin("nice")
class NICETwin(Twin):
    defaults = dict(epochs=20, batch_size=200, lr=1e-3, couplings=4, hidden=1000, hidden_layers=5)
    monitor = ("valid_ll", "max")
    patience = 20

    def build(self):
        from torch_models import TorchNICE
        c = self.config
        self.noise = np.random.default_rng(c["seed"] + 1)
        return TorchNICE(784, c["couplings"], c["hidden"], c["hidden_layers"])

    def make_optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=self.config["lr"], betas=(0.9, 0.99), eps=1e-4)

    def _images(self, split):
        images = data().load_mnist(split)[0]
        return images.reshape(len(images), -1)

    def train_dataset(self):
        return (_limit(self._images("train"), self.config.get("limit_train")),)

    def loss(self, model, batch):
        x = torch.from_numpy(data().dequantize(batch[0].numpy(), self.noise))
        return -model.log_prob(x).mean()

    def evaluate(self, model, split):
        x = data().dequantize(self._images(split), np.random.default_rng(12345))
        x = _limit(x, self.config.get("limit_eval"))
        ll = sum(float(model.log_prob(torch.from_numpy(x[i:i + 1000])).sum().item())
                 for i in range(0, len(x), 1000)) / len(x)
        bpd = (-ll + 784 * math.log(256)) / (784 * math.log(2))
        return {f"{split}_ll": ll, f"{split}_bits_per_dim": bpd}

    def visualize(self, model, out):
        n = 64
        u = np.random.default_rng(self.config["seed"]).uniform(1e-6, 1 - 1e-6, size=(n, 784))
        x = torch.from_numpy((np.log(u) - np.log1p(-u)).astype(np.float32)) * (-model.log_scale).exp()
        for layer in reversed(model.couplings):
            x = layer.inverse(x)
        images = np.clip(x.numpy(), 0, 1).reshape(n, 28, 28)
        plots().image_grid(images, os.path.join(out, "samples.png"), nrow=8)


# -- GAN, WGAN-GP, DCGAN ----------------------------------------------------------------------------
class AdversarialOptimizer:
    """scratchgen.specs.gan.AdversarialOptimizer and training_step: D steps, then G's step."""

    def __init__(self, g, d):
        self.generator, self.discriminator = g, d

    @property
    def param_groups(self):
        return self.generator.param_groups + self.discriminator.param_groups

    def zero_grad(self):
        self.generator.zero_grad()
        self.discriminator.zero_grad()

    def step(self):
        self.generator.step()

    def state_dict(self):
        return {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict()}


def _chunks(n, parts):
    parts = max(1, min(int(parts), n))
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:]))


class MNISTClassifier:
    """scratchgen.metrics.mnist_classifier's MLP (784-512-256-10, ReLU) with its cached weights,
    run by torch: penultimate features and softmax, in batches of 2,000 (MNISTClassifier.embed)."""

    def __init__(self):
        cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                             "scratchgen", "classifier")
        names = sorted(f for f in os.listdir(cache) if f.endswith(".npz")) if os.path.isdir(cache) else []
        tag = "full" if "bundled subset" not in data().describe_mnist_source() else "bundled"
        names = [f for f in names if f"_{tag}_" in f] or names
        if not names:
            raise FileNotFoundError(f"no MNIST classifier in {cache}: build it with `python -m scratchgen.metrics`")
        with np.load(os.path.join(cache, names[0])) as z:
            arrays = [z[k] for k in sorted((k for k in z.files if k.startswith("a")), key=lambda k: int(k[1:]))]
        self.layers = []
        dims = [(784, 512), (512, 256), (256, 10)]
        mats = [a for a in arrays if a.ndim == 2]
        vecs = [a for a in arrays if a.ndim == 1]
        for (n_in, n_out), w, b in zip(dims, mats, vecs):
            layer = tnn.Linear(n_in, n_out)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(np.asarray(w, np.float32)).reshape(n_out, n_in)
                                   if w.shape == (n_out, n_in) else torch.from_numpy(np.asarray(w, np.float32)).T)
                layer.bias.copy_(torch.from_numpy(np.asarray(b, np.float32)))
            self.layers.append(layer)

    @torch.no_grad()
    def embed(self, images, batch_size=2000):
        x = np.asarray(images, np.float32).reshape(len(images), -1)
        feats, probs = [], []
        for i in range(0, len(x), batch_size):
            h = torch.from_numpy(x[i:i + batch_size])
            for layer in self.layers[:-1]:
                h = torch.relu(layer(h))
            feats.append(h.numpy().astype(np.float64))
            probs.append(torch.softmax(self.layers[-1](h), dim=1).numpy().astype(np.float64))
        return np.concatenate(feats), np.concatenate(probs)


class AdversarialTwin(Twin):
    defaults = dict(epochs=100, batch_size=64, lr=2e-4, betas=(0.5, 0.999), latent_dim=64, eval_samples=5000,
                    parzen_samples=10000)
    monitor = ("valid_fid", "min")
    objective = "gan"

    def __init__(self, config):
        super().__init__(config)
        self._data, self._clf = {}, None

    def build(self):
        from torch_gan import TorchGAN
        return TorchGAN(self.objective, self.config["latent_dim"])

    def make_optimizer(self, model):
        c = self.config
        make = lambda m: torch.optim.Adam(m.parameters(), lr=c["lr"], betas=tuple(c["betas"]))  # noqa: E731
        self.optimizer = AdversarialOptimizer(make(model.generator), make(model.discriminator))
        return self.optimizer

    def data(self, split):
        limit = self.config.get("limit_train") if split == "train" else self.config.get("limit_eval")
        if (split, limit) not in self._data:
            D = data()
            images, labels = D.load_mnist(split)
            images, labels = _limit(images, limit), _limit(labels, limit)
            self._data[split, limit] = (D.to_symmetric(images).reshape(len(images), -1), np.asarray(labels, np.int64))
        return self._data[split, limit]

    def train_dataset(self):
        return self.data("train")

    def loss(self, model, batch):
        """discriminator_steps then generator_loss (scratchgen.specs.gan)."""
        real = batch[0]
        model.generator.requires_grad_(False)
        model.discriminator.requires_grad_(True)
        d_opt = self.optimizer.discriminator
        for a, b in _chunks(len(real), model.n_critic):
            x = real[a:b]
            with torch.no_grad():
                fake = model.generator(torch.randn(b - a, model.latent_dim))
            eps = torch.rand(b - a, 1) if model.objective == "wgan_gp" else None
            d_opt.zero_grad()
            loss, stats = model.discriminator_loss(x, fake, eps)
            loss.backward()
            d_opt.step()
        model.discriminator.requires_grad_(False)
        model.generator.requires_grad_(True)
        g_loss = model.generator_loss(model.generator(torch.randn(b - a, model.latent_dim)))
        return {"loss": g_loss, **stats}

    def samples_unit(self, model, n):
        out = [model.generator(torch.randn(min(1000, n - i), model.latent_dim)).numpy() for i in range(0, n, 1000)]
        return (np.clip(np.concatenate(out), -1, 1) + 1) / 2

    def classifier(self):
        if self._clf is None:
            self._clf = MNISTClassifier()
        return self._clf

    def evaluate(self, model, split):
        scores = sg_module("metrics/scores")
        c = self.config
        x, _ = self.data(split)
        real = torch.from_numpy(x[:1000])
        fake = model.generator(torch.randn(len(real), model.latent_dim))
        read = torch.sigmoid if model.objective == "gan" else (lambda a: a)
        out = {f"{split}_d_real": float(read(model.discriminator(real)).mean().item()),
               f"{split}_d_fake": float(read(model.discriminator(fake)).mean().item())}
        reference = (x + 1) / 2
        samples = self.samples_unit(model, int(c["eval_samples"]))
        clf = self.classifier()
        ref = scores.gaussian_stats(clf.embed(reference)[0])
        out[f"{split}_fid"] = scores.frechet_distance(*scores.gaussian_stats(clf.embed(samples)[0]), *ref)
        if split == "test":
            out["test_inception_score"], out["test_inception_score_std"] = scores.inception_score(clf.embed(samples)[1])
            if c.get("parzen_samples"):
                valid = (self.data("valid")[0] + 1) / 2
                out.update(parzen_window(self.samples_unit(model, int(c["parzen_samples"])), valid, reference))
        return out

    def visualize(self, model, out):
        P = plots()
        images = self.samples_unit(model, 64)
        P.image_grid(images.reshape(-1, 28, 28), os.path.join(out, "samples.png"), nrow=8,
                     title=f"{self.name}: samples")
        s = torch.from_numpy(self.samples_unit(model, 8).astype(np.float32))
        train = (self.data("train")[0] + 1) / 2
        t = torch.from_numpy(train.astype(np.float32, copy=False))
        d2 = ((s * s).sum(1)[:, None] - 2 * s @ t.T + (t * t).sum(1)[None, :]).clamp_min(0)
        dist, idx = torch.topk(d2, 5, dim=1, largest=False)
        ims, titles = [], []
        for i in range(len(s)):
            ims.append(s[i].numpy())
            titles.append("sample")
            for j in range(5):
                ims.append(train[int(idx[i, j])])
                titles.append(f"{math.sqrt(float(dist[i, j])):.2f}")
        P.image_grid(np.stack(ims).reshape(-1, 28, 28), os.path.join(out, "nearest_neighbours.png"), nrow=6,
                     titles=titles, title="samples (left) and their 5 nearest training digits (L2)")
        adversarial_curves(os.path.join(out, "metrics.jsonl"), os.path.join(out, "adversarial_curves.png"),
                           title=self.name)


def parzen_window(samples, valid, test, batch=500):
    """metrics.parzen_window: bandwidth from 10 on a log grid by the mean validation LL, then the
    test LL; squared distances in float32, the log-mean-exp in float64 (torch.logsumexp)."""
    sigmas = torch.from_numpy(np.logspace(-1, 0, 10))
    s = torch.from_numpy(np.asarray(samples, np.float32))
    s_sq = (s * s).sum(1)
    d = s.shape[1]

    def ll(x, sig):
        x = torch.from_numpy(np.asarray(x, np.float32))
        rows = []
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            d2 = ((xb * xb).sum(1)[:, None] - 2 * xb @ s.T + s_sq[None, :]).clamp_min(0).double()
            rows.append(torch.stack([torch.logsumexp(-d2 / (2 * v * v), dim=1) - math.log(len(s))
                                     - 0.5 * d * math.log(2 * math.pi * v * v) for v in sig.tolist()]))
        return torch.cat(rows, dim=1)

    best = int(ll(valid, sigmas).mean(1).argmax())
    test_ll = ll(test, sigmas[best:best + 1])[0]
    return {"test_parzen_ll": float(test_ll.mean()), "test_parzen_sem": float(test_ll.std() / math.sqrt(len(test_ll))),
            "test_parzen_sigma": float(sigmas[best])}


def adversarial_curves(metrics_path, path, title=None):
    """scratchgen.specs.gan.adversarial_curves (the same panels and figure)."""
    P = plots()
    records = P.read_jsonl(metrics_path)
    panels = [("discriminator outputs", ["train_d_real", "train_d_fake", "valid_d_real", "valid_d_fake"]),
              ("losses", ["train_loss", "train_d_loss"]),
              ("critic's Wasserstein estimate", ["train_wasserstein"]),
              ("FID (validation)", ["valid_fid"]),
              ("Inception Score (validation samples)", ["valid_is"])]
    panels = [(t, [k for k in keys if any(k in r for r in records)]) for t, keys in panels]
    panels = [(t, keys) for t, keys in panels if keys]
    plt = P.plt
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.2), squeeze=False)
    names = {"train_loss": "G loss", "train_d_loss": "D loss"}
    for ax, (t, keys) in zip(axes[0], panels):
        for k in keys:
            pts = [(r["epoch"], r[k]) for r in records if k in r]
            ax.plot(*zip(*pts), marker="o" if len(pts) < 30 else None, markersize=3, label=names.get(k, k))
        ax.set_title(t)
        ax.set_xlabel("epoch")
        if t.startswith("FID"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return P._save(fig, path)


@twin("gan")
class GANTwin(AdversarialTwin):
    objective = "gan"


@twin("wgan_gp")
class WGANGPTwin(AdversarialTwin):
    defaults = dict(AdversarialTwin.defaults, lr=1e-4, betas=(0.5, 0.9), batch_size=5 * 64)
    objective = "wgan_gp"


@twin("dcgan")
class DCGANTwin(AdversarialTwin):
    defaults = dict(AdversarialTwin.defaults, epochs=20, latent_dim=100, channels=64)

    def build(self):
        from torch_dcgan import TorchDCGANDiscriminator, TorchDCGANGenerator
        from torch_gan import TorchGAN
        c = self.config
        model = TorchGAN("gan", c["latent_dim"])
        model.generator = TorchDCGANGenerator(c["latent_dim"], c["channels"])
        model.discriminator = TorchDCGANDiscriminator(c["channels"], batch_norm=True)
        for m in model.modules():    # dcgan_init_: N(0, 0.02) weights, BN scales N(1, 0.02), zero biases
            if isinstance(m, (tnn.Conv2d, tnn.ConvTranspose2d, tnn.Linear)):
                tnn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
                tnn.init.normal_(m.weight, 1.0, 0.02)
            else:
                continue
            if m.bias is not None:
                tnn.init.zeros_(m.bias)
        return model


# -- PixelCNN, gated PixelCNN -----------------------------------------------------------------------
def _torch_pixelcnn():
    """bench/torch_pixelcnn.py with its masks from its own causal_mask: its default asks
    scratchgen.kernels for them, which would load scratchgen (and its thread policy) here."""
    import torch_pixelcnn
    torch_pixelcnn.scratchgen_mask = lambda *args, **kwargs: None
    return torch_pixelcnn


class AutoregressiveTwin(Twin):
    monitor = ("valid_nll", "min")
    patience = 10

    def _split(self, split):
        x = data().load_binarized_mnist(split)
        x = _limit(x, self.config.get("limit_train" if split == "train" else "limit_eval"))
        return x.reshape(len(x), 1, 28, 28)

    def train_dataset(self):
        return (self._split("train"),)

    def loss(self, model, batch):
        return model.nll(batch[0]).mean()

    def evaluate(self, model, split, batch=500):
        x = self._split(split)
        total = sum(float(model.nll(torch.from_numpy(x[i:i + batch])).sum().item()) for i in range(0, len(x), batch))
        return {f"{split}_nll": total / len(x)}

    def visualize(self, model, out):
        autoregressive_sample = _torch_pixelcnn().autoregressive_sample
        n = 16
        with torch.no_grad():
            images = autoregressive_sample(model, n, seed=self.config["seed"]).numpy()
        plots().image_grid(images.reshape(n, 28, 28), os.path.join(out, "samples.png"), nrow=4,
                           title=f"{self.name}: samples")


@twin("pixelcnn")
class PixelCNNTwin(AutoregressiveTwin):
    defaults = dict(epochs=20, batch_size=64, lr=1e-3, channels=64, blocks=7, out_channels=64)

    def build(self):
        c = self.config
        return _torch_pixelcnn().build_torch("pixelcnn", c["channels"], c["blocks"], c["out_channels"])


@twin("gated_pixelcnn")
class GatedPixelCNNTwin(AutoregressiveTwin):
    defaults = dict(epochs=20, batch_size=64, lr=1e-3, channels=32, layers=8, out_channels=64)

    def build(self):
        c = self.config
        return _torch_pixelcnn().build_torch("gated", c["channels"], c["layers"], c["out_channels"])


# -- RBM --------------------------------------------------------------------------------------------
def _generator(seed, stream):
    """A torch.Generator for one of the run's random streams (scratchgen: Generator([seed, stream]))."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), stream]).generate_state(1)[0]))


def _softplus64(x):
    """softplus exact to float64 rounding (torch's default threshold, 20, drops log1p(exp(-20)) ~ 2e-9)."""
    return TF.softplus(x, threshold=40)


def base_rate_bias(x, smoothing=0.05):
    """scratchgen.models.rbm.base_rate_bias: the smoothed logits of the pixel frequencies (float64)."""
    n = len(x)
    p = (x.sum(0, dtype=torch.float64) + smoothing * n) / (n + 2 * smoothing * n)
    return torch.log(p) - torch.log1p(-p)


def ais_schedule(n):
    """scratchgen.models.rbm.ais_schedule(n): n + 1 inverse temperatures over the paper's three
    stretches ([0, .5], [.5, .9], [.9, 1]) in the paper's proportions 500 : 4000 : 10000."""
    paper = [500, 4000, 10000]
    counts = [max(1, round(n * p / sum(paper))) for p in paper[:2]]
    counts.append(max(1, n - sum(counts)))
    parts = [np.linspace(s, e, k + 1)[:-1] for s, e, k in zip((0.0, 0.5, 0.9), (0.5, 0.9, 1.0), counts)]
    return np.concatenate(parts + [np.ones(1)])


class TwinRBM(tnn.Module):
    """A binary RBM: W (hidden x visible) ~ N(0, init_std^2), b = the given visible biases, c = 0;
    F(v) = -b.v - sum_j softplus(c_j + W_j.v); block Gibbs sampling with torch.bernoulli."""

    def __init__(self, visible, hidden, init_std, visible_bias):
        super().__init__()
        self.W = tnn.Parameter(torch.randn(hidden, visible) * init_std)
        self.b = tnn.Parameter(visible_bias.float().clone())
        self.c = tnn.Parameter(torch.zeros(hidden))

    def free_energy(self, v):
        return -(v @ self.b) - TF.softplus(TF.linear(v, self.W, self.c)).sum(1)

    def cd_loss(self, v_data, v_model):
        return self.free_energy(v_data).mean() - self.free_energy(v_model.detach()).mean()

    def sample_hidden(self, v, g):
        return torch.bernoulli(torch.sigmoid(TF.linear(v, self.W, self.c)), generator=g)

    def visible_probs(self, h):
        return torch.sigmoid(torch.addmm(self.b, h, self.W))

    def gibbs(self, v, k, g):
        for _ in range(k):
            v = torch.bernoulli(self.visible_probs(self.sample_hidden(v, g)), generator=g)
        return v

    def base_rate_particles(self, n, g):
        return torch.bernoulli(torch.sigmoid(self.b).expand(n, -1), generator=g)


def ais(model, runs, betas, base_bias, g):
    """RBM.ais: log Z by annealed importance sampling from the base-rate model, vectorised over the
    runs, in float64; returns (log Z_hat, log(Z_hat - 3 sigma_hat), log(Z_hat + 3 sigma_hat))."""
    beta = ais_schedule(betas).tolist()
    W, b, c = (p.detach().double() for p in (model.W, model.b, model.c))
    H, D = W.shape
    b_a = base_bias
    log_z_a = H * math.log(2.0) + float(_softplus64(b_a).sum())
    db = b - b_a
    W_t = W.t().contiguous()
    v = torch.bernoulli(torch.sigmoid(b_a).expand(runs, D), generator=g)   # exact draw from p_0
    log_w = torch.zeros(runs, dtype=torch.float64)
    K = len(beta) - 1
    for k in range(1, K + 1):
        pre = torch.addmm(c, v, W_t)
        bp = beta[k] * pre
        log_w += (beta[k] - beta[k - 1]) * (v @ db) + _softplus64(bp).sum(1) - _softplus64(beta[k - 1] * pre).sum(1)
        if k < K:   # one Gibbs step that leaves p_k invariant
            h = torch.bernoulli(torch.sigmoid(bp), generator=g)
            v = torch.bernoulli(torch.sigmoid((1 - beta[k]) * b_a + beta[k] * torch.addmm(b, h, W)), generator=g)
    # ais_result: log Z_hat and log(Z_hat -+ 3 sigma_hat), sigma_hat the standard error of the weights
    log_w = log_w.numpy()
    m = float(log_w.max())
    w = np.exp(log_w - m)
    mean, se = float(w.mean()), float(w.std(ddof=1) / math.sqrt(len(w)))
    top = log_z_a + m
    low = top + math.log(mean - 3 * se) if mean > 3 * se else -math.inf
    return top + math.log(mean), low, top + math.log(mean + 3 * se)


@twin("rbm")
class RBMTwin(Twin):
    defaults = dict(epochs=15, batch_size=100, lr=0.01, hidden=500, cd_k=1, persistent=True, momentum=0.9,
                    init_std=0.01, ais_runs=100, ais_betas=14500, sample_steps=1000)
    monitor = ("valid_pseudo_nll", "min")
    patience = None
    n_samples = 100
    SPLITS = {"train": 0, "valid": 1, "test": 2}

    def _split(self, split):
        return data().load_binarized(split, limit=self.config.get("limit_train" if split == "train" else "limit_eval"))

    def train_dataset(self):
        if getattr(self, "_train", None) is None:
            self._train = self._split("train")
        return (self._train,)

    def describe_data(self):
        return data().describe_binarized_mnist_source()

    def build(self):
        c = self.config
        self.gibbs_rng = _generator(c["seed"], 1)   # the training chains' own stream (saved)
        self.chains = None
        bias = base_rate_bias(torch.from_numpy(self.train_dataset()[0]))
        return TwinRBM(784, int(c["hidden"]), c["init_std"], bias)

    def make_optimizer(self, model):
        return torch.optim.SGD(model.parameters(), lr=self.config["lr"], momentum=self.config["momentum"])

    def make_scheduler(self, optimizer):   # schedule=linear: straight down to 0 over the run
        return torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=int(self.config["epochs"]))

    def loss(self, model, batch):
        """PCD-k (or CD-k): k Gibbs steps from the persistent chains (or the batch), then the
        surrogate mean F(data) - mean F(negatives), whose gradient is the (P)CD estimate."""
        v, = batch
        k = int(self.config["cd_k"])
        with torch.no_grad():
            if self.config["persistent"]:
                if self.chains is None:
                    self.chains = model.base_rate_particles(int(self.config["batch_size"]), self.gibbs_rng)
                self.chains = model.gibbs(self.chains, k, self.gibbs_rng)
                v_neg = self.chains
            else:
                v_neg = model.gibbs(v, k, self.gibbs_rng)
        return model.cd_loss(v, v_neg)

    def training_state(self):
        return {"gibbs": self.gibbs_rng.get_state(), "chains": self.chains}

    @staticmethod
    def _params(model):
        return [p.detach().double() for p in (model.W, model.b, model.c)]

    def _proxies(self, model, x, split, chunk=1000):
        """RBMSpec._proxies: the pseudo-NLL from one coordinate per example (the same fixed draw)
        and the mean-field reconstruction cross-entropy, in float64."""
        W, b, c = self._params(model)
        coords = np.random.default_rng([int(self.config["seed"]), self.SPLITS.get(split, 3), 784]).integers(
            0, 784, len(x))
        pnll, xent = 0.0, 0.0
        for i in range(0, len(x), chunk):
            v = torch.from_numpy(x[i:i + chunk]).double()
            j = torch.from_numpy(coords[i:i + chunk])
            pre = torch.addmm(c, v, W.t())
            sign = 1 - 2 * v[torch.arange(len(v)), j]                    # +1 turns the bit on, -1 off
            pre_flip = pre + sign[:, None] * W[:, j].t()
            f = -(v @ b) - _softplus64(pre).sum(1)
            f_flip = -(v @ b + sign * b[j]) - _softplus64(pre_flip).sum(1)
            pnll -= 784 * float(TF.logsigmoid(f_flip - f).sum())
            logits = torch.addmm(b, torch.sigmoid(pre), W)
            xent += float((_softplus64(logits) - v * logits).sum())
        return pnll / len(x), xent / len(x)

    def evaluate(self, model, split):
        c = self.config
        x = self._split(split)
        pnll, xent = self._proxies(model, x, split)
        out = {f"{split}_pseudo_nll": pnll, f"{split}_recon_xent": xent}
        if split != "test":
            return out
        log_z, low, high = ais(model, int(c["ais_runs"]), int(c["ais_betas"]),
                               base_rate_bias(torch.from_numpy(self.train_dataset()[0])), _generator(c["seed"], 2))
        W, b, cc = self._params(model)
        free = torch.cat([-(v @ b) - _softplus64(torch.addmm(cc, v, W.t())).sum(1)
                          for v in (torch.from_numpy(x[i:i + 1000]).double() for i in range(0, len(x), 1000))])
        mean_f = float(free.mean())
        out.update({"test_nll_ais": mean_f + log_z, "test_nll_ais_conservative": mean_f + high,
                    "test_log_z": log_z, "test_log_z_low": low if math.isfinite(low) else None,
                    "test_log_z_high": high})
        return out

    def visualize(self, model, out):
        """samples.png: fantasy particles (the persistent chains, else base-rate pixels) after
        sample_steps Gibbs steps, drawn as the last step's p(v | h); filters.png: 100 rows of W."""
        P = plots()
        n, steps = self.n_samples, int(self.config["sample_steps"])
        g = _generator(self.config["seed"], 3)
        chains = self.chains
        v = chains[:n] if chains is not None and len(chains) >= n else model.base_rate_particles(n, g)
        v = model.gibbs(v, steps - 1, g)
        v = model.visible_probs(model.sample_hidden(v, g))
        P.image_grid(v.numpy().reshape(n, 28, 28), os.path.join(out, "samples.png"), nrow=int(math.ceil(math.sqrt(n))),
                     title=f"RBM fantasy particles ({steps} Gibbs steps)")
        W = self._params(model)[0][:100].numpy()
        lo, hi = W.min(axis=1, keepdims=True), W.max(axis=1, keepdims=True)
        P.image_grid(((W - lo) / np.maximum(hi - lo, 1e-12)).reshape(-1, 28, 28), os.path.join(out, "filters.png"),
                     nrow=10, title="RBM filters (rows of W)")


# -- NADE -------------------------------------------------------------------------------------------
@twin("nade")
class NADETwin(Twin):
    defaults = dict(epochs=50, batch_size=100, lr=1e-3, hidden=500)
    monitor = ("valid_nll", "min")
    patience = 10
    eval_batch = 100

    def _split(self, split):
        return data().load_binarized(split, limit=self.config.get("limit_train" if split == "train" else "limit_eval"))

    def describe_data(self):
        return data().describe_binarized_mnist_source()

    def build(self):
        from torch_nade import TorchNADE
        return TorchNADE(784, int(self.config["hidden"]))

    def train_dataset(self):
        return (self._split("train"),)

    def loss(self, model, batch):
        return -model.log_prob(batch[0]).mean()

    def evaluate(self, model, split):
        x = self._split(split)
        total = sum(float(model.log_prob(torch.from_numpy(x[i:i + self.eval_batch])).sum())
                    for i in range(0, len(x), self.eval_batch))
        return {f"{split}_nll": -total / len(x)}

    def visualize(self, model, out):
        n = 64
        plots().image_grid(model.sample(n).numpy().reshape(n, 28, 28), os.path.join(out, "samples.png"), nrow=8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(TWINS))
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--patience", type=int)
    p.add_argument("--limit-train", type=int, dest="limit_train")
    p.add_argument("--limit-eval", type=int, dest="limit_eval")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--cd-k", type=int, dest="cd_k", help="rbm: Gibbs steps per update (--set cd_k=K)")
    p.add_argument("--persistent", action=argparse.BooleanOptionalAction,
                   help="rbm: persistent CD, or CD-k from the data (--set persistent=true/false)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.model != "rbm" and (args.cd_k is not None or args.persistent is not None):
        p.error("--cd-k and --persistent are rbm settings")
    config = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed", "patience",
                                             "limit_train", "limit_eval", "cd_k", "persistent")}
    run(TWINS[args.model](config), args)
    assert "scratchgen" not in sys.modules, "the twin must not load scratchgen's engine or thread policy"
    return 0


if __name__ == "__main__":
    sys.exit(main())
