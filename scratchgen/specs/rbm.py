"""`scratchgen train rbm`: a binary RBM (scratchgen.models.rbm) on binarized MNIST, trained with CD-k
or persistent CD, its test NLL in nats with log Z from annealed importance sampling.

Per epoch, validation reports two cheap proxies (log Z is not needed for either):

    valid_pseudo_nll   -log PL(v) = -sum_i log p(v_i | v_-i), estimated without bias from one
                       coordinate per example, D * log sigmoid(F(v with bit i flipped) - F(v)); the
                       coordinates are drawn once per split with a fixed seed, so epochs are compared
                       on the same coordinates (the monitored metric)
    valid_recon_xent   cross-entropy of v against its mean-field reconstruction p(v | p(h | v))

On the test split: test_nll_ais (mean -log p(v) with the AIS estimate of log Z, the paper's
schedule and 100 runs by default), test_nll_ais_conservative (with the upper end of log Z's
+-3 sigma bar), test_log_z, test_log_z_low (None when Z_hat - 3 sigma_hat <= 0) and
test_log_z_high. An RBM with at most `exact_hidden` hidden units gets log Z exactly by
enumeration instead (test_nll_exact, test_log_z). With `raise_examples` N > 0, reverse AIS
(RAISE, scratchgen.models.rbm) scores the first N test examples too: test_nll_raise, a
conservative (stochastic upper) estimate of their NLL over the same `ais_betas` schedule, beside
test_nll_on_raise_examples, the NLL of those examples with the log Z above.
"""
import math
import os

import numpy as np

from ..data import load_binarized
from ..grad_mode import no_grad
from ..models.rbm import RBM, base_rate_bias
from ..random import Generator, fork_rng
from .registry import ModelSpec, register

CHUNK = 1000  # examples per evaluation block
SPLITS = {"train": 0, "valid": 1, "test": 2}


def _logsigmoid(x):
    return -(np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x))))


@register("rbm")
class RBMSpec(ModelSpec):
    description = "binary RBM (CD-k / persistent CD) on binarized MNIST, test NLL in nats with AIS log Z"
    dataset = "binarized_mnist"
    defaults = dict(epochs=15, batch_size=100, lr=0.01, hidden=500, cd_k=1, persistent=True,
                    optimizer="sgd", momentum=0.9, schedule="linear", init_std=0.01,
                    ais_runs=100, ais_betas=14500, exact_hidden=20, sample_steps=1000, raise_examples=0,
                    raise_runs=1)
    monitor = ("valid_pseudo_nll", "min")
    patience = None
    n_samples = 100
    setting_help = {
        "hidden": "number of hidden units",
        "cd_k": "Gibbs steps per parameter update (the k of CD-k and of PCD-k)",
        "persistent": "persistent CD (Tieleman 2008): the negative chains carry over between updates "
                      "instead of restarting at the data",
        "optimizer": "sgd (with `momentum`) or adam",
        "momentum": "SGD momentum",
        "init_std": "standard deviation of the initial weights",
        "ais_runs": "AIS runs for the test log Z estimate",
        "ais_betas": "AIS steps between inverse temperatures 0 and 1; 14500 is the paper's schedule "
                     "(steps of 1e-3, 1e-4, 1e-5 on [0, .5], [.5, .9], [.9, 1]), fewer keep its proportions",
        "exact_hidden": "up to this many hidden units, log Z is computed exactly (2^hidden states) instead "
                        "of by AIS (0: always AIS)",
        "sample_steps": "Gibbs steps of the fantasy particles drawn into samples.png",
        "raise_examples": "test examples scored by reverse AIS (RAISE, a conservative estimate; a chain per example "
                          "over the AIS schedule); 0: none",
        "raise_runs": "reverse-AIS chains per test example (their weights are averaged before the log)",
    }

    # -- data and model ----------------------------------------------------------------------
    def _split(self, split, limit=None):
        return load_binarized(split, limit=limit)

    def _train(self):
        if getattr(self, "_train_x", None) is None:
            self._train_x = self._split("train", self.config.get("limit_train"))
        return self._train_x

    def build(self):
        c = self.config
        self.gibbs_rng = Generator([c["seed"], 1])   # the training chains' own stream (saved)
        self.chains = None
        # Visible biases start at the logits of the pixel frequencies (Hinton's practical guide).
        bias = base_rate_bias(self._train())
        return RBM(784, int(c["hidden"]), init_std=c["init_std"], visible_bias=bias)

    def make_optimizer(self, model):
        from .. import optim
        c = self.config
        if c["optimizer"] == "sgd":
            return optim.SGD(model.parameters(), lr=c["lr"], momentum=c["momentum"],
                             weight_decay=c.get("weight_decay") or 0)
        if c["optimizer"] == "adam":
            return super().make_optimizer(model)
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {c['optimizer']!r}")

    def train_dataset(self):
        return (self._train(),)

    # -- training -----------------------------------------------------------------------------
    def negatives(self, model, v):
        """The negative particles of one update: k Gibbs steps from the data (CD-k) or from the
        persistent chains (PCD-k), which then hold the result."""
        k = int(self.config["cd_k"])
        if not self.config["persistent"]:
            return model.gibbs(v, k, self.gibbs_rng)
        if self.chains is None:   # fantasy particles start as independent pixels at the base rate
            n = int(self.config["batch_size"])
            self.chains = model.sample(n, steps=0, generator=self.gibbs_rng).data
        self.chains = model.gibbs(self.chains, k, self.gibbs_rng)
        return self.chains

    def training_step(self, model, batch, optimizer):
        from ..train import gradient_step
        v, = batch
        with no_grad():
            v_neg = self.negatives(model, v)
        return gradient_step(optimizer, model.cd_loss(v, v_neg))

    def loss(self, model, batch):
        """The CD-k surrogate with chains started at the batch (its value is not a likelihood)."""
        v, = batch
        with no_grad():
            v_neg = model.gibbs(v, int(self.config["cd_k"]), self.gibbs_rng)
        return model.cd_loss(v, v_neg)

    def training_state(self, model):
        state = {"gibbs": self.gibbs_rng.get_state()}
        if self.chains is not None:
            from .. import backend
            state["chains"] = backend.to_device(self.chains, "cpu")
        return state

    def load_training_state(self, model, state):
        if "gibbs" in state:
            self.gibbs_rng.set_state(state["gibbs"])
        if state.get("chains") is not None:
            from .. import backend
            self.chains = backend.to_device(np.asarray(state["chains"], dtype=model.W.dtype), model.W.device)

    # -- evaluation ---------------------------------------------------------------------------
    @staticmethod
    def _params(model):
        from .. import backend
        return [backend.to_device(p.data, "cpu").astype(np.float64) for p in (model.W, model.b, model.c)]

    def _proxies(self, model, x, split):
        """Stochastic pseudo-NLL (fixed coordinates) and reconstruction cross-entropy, per example."""
        W, b, c = self._params(model)
        coords = np.random.default_rng([int(self.config["seed"]), SPLITS.get(split, 3), 784]).integers(0, 784, len(x))
        pnll, xent = 0.0, 0.0
        for i in range(0, len(x), CHUNK):
            v = x[i:i + CHUNK].astype(np.float64)
            j = coords[i:i + CHUNK]
            pre = v @ W.T + c
            sign = 1 - 2 * v[np.arange(len(v)), j]           # +1 turns the bit on, -1 off
            pre_flip = pre + sign[:, None] * W[:, j].T
            f = -(v @ b) - np.logaddexp(0, pre).sum(1)
            f_flip = -(v @ b + sign * b[j]) - np.logaddexp(0, pre_flip).sum(1)
            pnll -= 784 * _logsigmoid(f_flip - f).sum()
            logits = (1 / (1 + np.exp(-pre))) @ W + b
            xent += (np.logaddexp(0, logits) - v * logits).sum()
        return pnll / len(x), xent / len(x)

    def log_z(self, model, split="test"):
        """{'log_z', and for AIS 'log_z_low', 'log_z_high'}; exact for a small hidden layer."""
        c = self.config
        if model.hidden <= int(c["exact_hidden"]):
            return {"log_z": model.log_z_exact()}
        with fork_rng():   # scoring must not move any random stream of the run
            r = model.ais(runs=int(c["ais_runs"]), betas=int(c["ais_betas"]),
                          base_bias=base_rate_bias(self._train()), generator=Generator([int(c["seed"]), 2]))
        return {"log_z": r.log_z, "log_z_low": r.log_z_low, "log_z_high": r.log_z_high}

    def evaluate(self, model, split):
        x = self._split(split, self.config.get("limit_eval"))
        pnll, xent = self._proxies(model, x, split)
        out = {f"{split}_pseudo_nll": pnll, f"{split}_recon_xent": xent}
        if split != "test":
            return out
        z = self.log_z(model, split)
        W, b, c = self._params(model)
        free = np.concatenate([-(v @ b) - np.logaddexp(0, v @ W.T + c).sum(1)
                               for v in (x[i:i + CHUNK].astype(np.float64) for i in range(0, len(x), CHUNK))])
        mean_f = float(free.mean())
        out.update(self._reverse_ais(model, x, free, z["log_z"]))
        if "log_z_high" not in z:
            out.update({"test_nll_exact": mean_f + z["log_z"], "test_log_z": z["log_z"]})
            return out
        # The low end is -inf when Z_hat <= 3 sigma_hat (a few runs carry all the weight: too short
        # a schedule, or too few runs); JSON has no infinity, so it is reported as None.
        low = z["log_z_low"] if math.isfinite(z["log_z_low"]) else None
        out.update({"test_nll_ais": mean_f + z["log_z"], "test_nll_ais_conservative": mean_f + z["log_z_high"],
                    "test_log_z": z["log_z"], "test_log_z_low": low, "test_log_z_high": z["log_z_high"]})
        return out

    def _reverse_ais(self, model, x, free, log_z):
        """RAISE's conservative NLL on the first `raise_examples` test rows, and the AIS figure on
        the same rows to set it against (a chain per example: too dear for the whole split)."""
        c = self.config
        n = min(int(c.get("raise_examples") or 0), len(x))
        if not n:
            return {}
        with fork_rng():   # scoring must not move any random stream of the run
            log_p = model.reverse_ais(x[:n], runs=int(c["raise_runs"]), betas=int(c["ais_betas"]),
                                      base_bias=base_rate_bias(self._train()),
                                      generator=Generator([int(c["seed"]), 3]))
        return {"test_nll_raise": float(-log_p.mean()), "test_nll_on_raise_examples": float(free[:n].mean() + log_z),
                "raise_examples": n, "raise_runs": int(c["raise_runs"])}

    # -- pictures -----------------------------------------------------------------------------
    def sample(self, model, n, path):
        """Fantasy particles: the persistent chains where training left some (else chains from
        independent base-rate pixels), run `sample_steps` more Gibbs steps; drawn as the last
        step's p(v | h)."""
        from ..plots import image_grid
        chains = getattr(self, "chains", None)
        init = chains[:n] if chains is not None and len(chains) >= n else None
        with no_grad():
            v = model.sample(n, steps=int(self.config["sample_steps"]), probs=True, init=init,
                             generator=Generator([int(self.config["seed"]), 3]))
        return image_grid(v.numpy().reshape(n, 28, 28), path, nrow=int(math.ceil(math.sqrt(n))),
                          title=f"RBM fantasy particles ({self.config['sample_steps']} Gibbs steps)")

    def visualize(self, model, out_dir, n=None):
        """samples.png and filters.png (the first 100 rows of W as 28 x 28 images, each scaled to
        its own range)."""
        from ..plots import image_grid
        path = self.sample(model, n or self.n_samples, os.path.join(out_dir, "samples.png"))
        W = self._params(model)[0][:100]
        lo, hi = W.min(axis=1, keepdims=True), W.max(axis=1, keepdims=True)
        image_grid(((W - lo) / np.maximum(hi - lo, 1e-12)).reshape(-1, 28, 28), os.path.join(out_dir, "filters.png"),
                   nrow=10, title="RBM filters (rows of W)")
        return path

