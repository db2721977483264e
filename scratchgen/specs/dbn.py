"""`scratchgen train dbn`: a deep belief network (scratchgen.models.dbn) on binarized MNIST, trained
greedily layer by layer (Hinton, Osindero & Teh 2006) and scored by its variational lower bound on
the test log-likelihood in nats, the top RBM's log Z from AIS (Salakhutdinov & Murray 2008).

Greedy training in the one training loop. Each RBM is trained with CD-k (or PCD-k: `persistent`)
exactly as `scratchgen train rbm` trains one, RBM l on the mean-field probabilities q(h = 1 | .) of
the data carried up through the frozen RBMs below it (computed per batch; the lower RBMs no longer
change, so this is the same as propagating the training set once); when its turn comes, its
visible biases start at the logits of that input's mean activity (Hinton's practical guide, as the
first RBM's start at the pixels' base rate). The run's training steps are
split evenly over the L layers, in order: with S = epochs x ceil(N / batch_size) steps in all,

    RBM l (0-based) trains in steps [l S / L, (l + 1) S / L),

so with `--epochs E` a multiple of L, layer l trains in epochs l E/L + 1 .. (l + 1) E/L; otherwise a
layer hands over in the middle of an epoch (and with E < L each layer gets part of one). Only the
layer in training has gradients, so the optimizer (one for all layers; a parameter without a
gradient is skipped) changes nothing below it. `train_layer` in metrics.jsonl is the mean 1-based
layer of the epoch's steps. The step count is saved in checkpoints; a resume with another
`--epochs` replans the split from the step reached. A `schedule` other than none runs over the
whole run, not per layer.

Per epoch, validation reports valid_nll_bound: minus the lower bound on log p(v) (an upper bound on
the NLL), averaged over the split, with `bound_samples` draws from the recognition pass per example
and the top RBM's log Z from AIS (`ais_runs` runs of `ais_betas` steps, from the base-rate model of
the top RBM's input; exact for a top RBM whose smaller layer has at most `exact_bits` units). It is
the monitored metric (best.npz, and the weights tested at the end); the AIS is most of the
validation's time. On the test split: test_nll_bound, test_nll_bound_conservative (with the upper
end of log Z's +-3 sigma bar instead of log Z_hat), test_log_z, test_log_z_low (None when
Z_hat - 3 sigma_hat <= 0) and test_log_z_high; with an exact log Z only test_nll_bound and
test_log_z.

The default AIS schedule is short, for the command line's speed; the paper's is
`--set ais_betas=14500`. A schedule too short for the top RBM gives a log Z_hat far too low and so a
bound far too good, and the 3-sigma bar does not show it: a number is only worth reporting once a
longer schedule no longer raises test_log_z.
"""
import hashlib
import math

import numpy as np

from ..grad_mode import no_grad
from ..models.dbn import DBN
from ..models.rbm import base_rate_bias
from ..random import Generator, fork_rng
from .rbm import SPLITS, RBMSpec
from .registry import register

CHUNK = 1000          # examples per evaluation block
BASE_RATE_ROWS = 10000  # training rows whose upward probabilities give AIS's base-rate model


@register("dbn")
class DBNSpec(RBMSpec):
    """Data (binarized MNIST), optimizer and CD / PCD negatives as RBMSpec's; the model, the layer
    schedule, the bound and the pictures are the DBN's."""

    description = ("deep belief network (greedy stack of RBMs, CD-k / PCD) on binarized MNIST, "
                   "test NLL bound in nats with AIS log Z")
    defaults = dict(epochs=30, batch_size=100, lr=0.01, hidden=[500, 500, 2000], cd_k=1, persistent=False,
                    optimizer="sgd", momentum=0.9, weight_decay=0.0002, schedule="none", init_std=0.01,
                    ais_runs=100, ais_betas=1000, exact_bits=20, bound_samples=1, sample_steps=1000)
    monitor = ("valid_nll_bound", "min")
    patience = None
    n_samples = 100
    setting_help = {
        "epochs": "training epochs, split evenly over the layers in order (layer l trains in steps "
                  "[l S/L, (l+1) S/L) of the S steps of the run)",
        "hidden": "widths of the hidden layers h_1 .. h_L, bottom to top (one RBM per layer; the top "
                  "two layers form the top RBM)",
        "cd_k": "Gibbs steps per parameter update of the layer in training (the k of CD-k and PCD-k)",
        "persistent": "persistent CD (Tieleman 2008) for each layer's RBM: its negative chains carry over "
                      "between updates (restarted when the next layer starts)",
        "optimizer": "sgd (with `momentum`) or adam",
        "momentum": "SGD momentum",
        "init_std": "standard deviation of the initial weights of every RBM",
        "ais_runs": "AIS runs for the top RBM's log Z (each validation and the test)",
        "ais_betas": "AIS steps between inverse temperatures 0 and 1; 14500 is the paper's schedule "
                     "(steps of 1e-3, 1e-4, 1e-5 on [0, .5], [.5, .9], [.9, 1]), fewer keep its proportions",
        "exact_bits": "a top RBM whose smaller layer has at most this many units gets log Z exactly by "
                      "enumeration (0: always AIS)",
        "bound_samples": "draws from the recognition pass q(h | v) per example for the lower bound",
        "sample_steps": "Gibbs steps in the top RBM before the top-down pass of samples.png",
    }

    # -- data and model ----------------------------------------------------------------------
    def build(self):
        c = self.config
        hidden = [int(h) for h in c["hidden"]]
        if not hidden:
            raise ValueError("a DBN needs at least one hidden layer: set hidden=[500, ...]")
        self.gibbs_rng = Generator([c["seed"], 1])   # the training chains' own stream (saved)
        self.chains = None           # PCD chains of the layer in training
        self.chains_layer = None     # which layer they belong to
        self.steps = 0               # training steps done: the layer schedule's clock (saved)
        self.layers_started = 0      # layers whose training has begun (saved)
        # The first visible biases start at the logits of the pixel frequencies (Hinton's guide).
        return DBN([784] + hidden, init_std=c["init_std"], visible_bias=base_rate_bias(self._train()))

    def layer_at(self, step):
        """The (0-based) layer that trains at training step `step`: floor(step L / S), S the run's
        steps (epochs x batches per epoch), capped at the top."""
        layers = len(self.config["hidden"])
        per_epoch = -(-len(self._train()) // int(self.config["batch_size"]))
        total = max(1, int(self.config["epochs"]) * per_epoch)
        return min(layers - 1, step * layers // total)

    # -- training -----------------------------------------------------------------------------
    def training_step(self, model, batch, optimizer):
        """One CD (or PCD) update of the layer the schedule names, on the batch carried up to it."""
        from ..train import gradient_step
        v, = batch
        layer = self.layer_at(self.steps)
        while self.layers_started <= layer:
            self.start_layer(model, self.layers_started)
        if layer != self.chains_layer:   # a new layer: the previous layer's chains mean nothing to it
            self.chains, self.chains_layer = None, layer
        rbm = model.rbms[layer]
        with no_grad():
            x = model.up(v, layer)
            x_neg = self.negatives(rbm, x)
        loss = gradient_step(optimizer, rbm.cd_loss(x, x_neg))
        self.steps += 1
        return {"loss": loss, "layer": layer + 1}

    def start_layer(self, model, layer):
        """Before RBM `layer` first trains: its visible biases go to the logits of its input's mean
        activity on the first training rows, as the first RBM's start at the pixels' (Hinton's guide;
        the bottom layer already has them from build). A visible bias at 0 over sparse inputs leaves
        a spurious mode where half the input units are on and the hidden ones off."""
        if layer > 0:
            from .. import backend
            x = backend.to_device(model.up(self._train()[:BASE_RATE_ROWS], layer), "cpu")
            b = model.rbms[layer].b
            b.data[...] = backend.to_device(base_rate_bias(x).astype(b.data.dtype), b.device)
        self.layers_started = layer + 1

    def loss(self, model, batch):
        """The CD-k surrogate of the layer in training, chains started at the batch carried up to
        it (its value is not a likelihood)."""
        v, = batch
        layer = self.layer_at(self.steps)
        rbm = model.rbms[layer]
        with no_grad():
            x = model.up(v, layer)
            x_neg = rbm.gibbs(x, int(self.config["cd_k"]), self.gibbs_rng)
        return rbm.cd_loss(x, x_neg)

    def training_state(self, model):
        return {**super().training_state(model), "steps": self.steps, "layers_started": self.layers_started,
                "chains_layer": -1 if self.chains_layer is None else self.chains_layer}

    def load_training_state(self, model, state):
        super().load_training_state(model.rbms[0], state)   # the chains take the RBMs' dtype and device
        self.steps = int(state.get("steps", 0))
        self.layers_started = int(state.get("layers_started", 0))
        layer = int(state.get("chains_layer", -1))
        self.chains_layer = None if layer < 0 else layer

    # -- evaluation ---------------------------------------------------------------------------
    def log_z(self, model, split="test"):
        """The top RBM's {'log_z'} exactly, or {'log_z', 'log_z_low', 'log_z_high'} by AIS from the
        base-rate model of its input: the upward probabilities of the first training rows."""
        c = self.config
        top = model.top
        if min(top.visible, top.hidden) <= int(c["exact_bits"]):
            return {"log_z": top.log_z_exact()}
        from .. import backend
        base = base_rate_bias(backend.to_device(model.up(self._train()[:BASE_RATE_ROWS]), "cpu"))
        # The estimate is a function of the top RBM, the base model and the settings (its generator is
        # seeded afresh): the same inputs, e.g. the last validation's model on the test, reuse it.
        digest = hashlib.sha256(base.tobytes())
        for p in (top.W, top.b, top.c):
            digest.update(np.ascontiguousarray(backend.to_device(p.data, "cpu")).tobytes())
        key = (digest.hexdigest(), int(c["ais_runs"]), int(c["ais_betas"]), int(c["seed"]))
        if getattr(self, "_log_z_cache", (None,))[0] != key:
            with fork_rng():   # scoring must not move any random stream of the run
                r = top.ais(runs=int(c["ais_runs"]), betas=int(c["ais_betas"]), base_bias=base,
                            generator=Generator([int(c["seed"]), 2]))
            self._log_z_cache = (key, {"log_z": r.log_z, "log_z_low": r.log_z_low, "log_z_high": r.log_z_high})
        return dict(self._log_z_cache[1])

    def evaluate(self, model, split):
        c = self.config
        x = self._split(split, c.get("limit_eval"))
        z = self.log_z(model, split)
        draws = Generator([int(c["seed"]), 4, SPLITS.get(split, 3)])   # the same draws every epoch
        with fork_rng():
            bound = np.concatenate([
                model.log_prob_lower_bound(x[i:i + CHUNK], z["log_z"], k=int(c["bound_samples"]), generator=draws)
                for i in range(0, len(x), CHUNK)])
        nll = -float(bound.mean())
        out = {f"{split}_nll_bound": nll, f"{split}_log_z": z["log_z"]}
        if split == "test" and "log_z_high" in z:
            # JSON has no infinity: a vacuous low end (Z_hat <= 3 sigma_hat) is reported as None.
            low = z["log_z_low"] if math.isfinite(z["log_z_low"]) else None
            out.update({"test_nll_bound_conservative": nll + z["log_z_high"] - z["log_z"],
                        "test_log_z_low": low, "test_log_z_high": z["log_z_high"]})
        return out

    # -- pictures -----------------------------------------------------------------------------
    def sample(self, model, n, path):
        """`sample_steps` Gibbs steps in the top RBM (from its persistent chains where training left
        some, else from independent units at its visible base rate), then the top-down pass; drawn
        as p(v | h_1)."""
        from ..plots import image_grid
        chains = getattr(self, "chains", None)
        top_chains = chains is not None and self.chains_layer == model.num_layers - 1 and len(chains) >= n
        with no_grad():
            v = model.sample(n, steps=int(self.config["sample_steps"]), probs=True,
                             init=chains[:n] if top_chains else None,
                             generator=Generator([int(self.config["seed"]), 3]))
        return image_grid(v.numpy().reshape(n, 28, 28), path, nrow=int(math.ceil(math.sqrt(n))),
                          title=f"DBN samples ({self.config['sample_steps']} Gibbs steps at the top, then down)")

    @staticmethod
    def _params(model):
        """The first RBM's (W, b, c) in float64: the filters RBMSpec.visualize draws into filters.png
        (next to samples.png from `sample` above)."""
        return RBMSpec._params(model.rbms[0] if isinstance(model, DBN) else model)
