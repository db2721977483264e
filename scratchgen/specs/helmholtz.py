"""`scratchgen train helmholtz`: a Helmholtz machine (scratchgen.models.helmholtz) on binarized MNIST,
trained with wake-sleep (`--set algorithm=ws`, Hinton et al. 1995) or reweighted wake-sleep
(`algorithm=rws`, Bornschein & Bengio 2015), its test NLL in nats estimated by importance sampling
with the recognition network as proposal.

Data: Larochelle's fixed binarization where its files are, else load_binarized's announced fallback
(the bundled MNIST subset binarized once with a fixed seed); the run records which.

The default layers, 784-200-200: two hidden layers of 200 units, the size of the small sigmoid
belief nets that NVIL (Mnih & Gregor 2014) and the RWS paper's comparisons use as MNIST baselines.

Optimizer: one Adam over both parameter sets, one step per batch on the sum of the phases'
surrogate losses. The p terms depend only on the generative parameters theta and the q terms only
on the recognition parameters phi, and Adam scales every coordinate by its own statistics, so this
is the same update as two Adams with the same settings, one per model, stepped on their own phase.
The dreams of a step are drawn from p before that step's update.

Metrics: per epoch valid_nll (importance sampling with `valid_k` samples, the monitored metric);
on the test split test_nll with `eval_k` samples (5000 by default) and test_eval_k. Every
evaluation draws its samples from its own seeded stream: the same samples each epoch, and the
training streams are left untouched. train_nll is the batch's estimate of -log p(x) from the
training samples (k = train_k for rws, a one-sample ELBO for ws), train_loss the surrogate's value.
"""
import math

from ..data import load_binarized
from ..models.helmholtz import HelmholtzMachine
from ..models.rbm import base_rate_bias
from ..random import Generator
from .registry import ModelSpec, register

SPLITS = {"train": 0, "valid": 1, "test": 2}
EVAL_BATCH = 100   # examples per importance-sampling pass


@register("helmholtz")
class HelmholtzSpec(ModelSpec):
    description = ("Helmholtz machine (sigmoid belief net + recognition net) on binarized MNIST, wake-sleep or "
                   "reweighted wake-sleep; test NLL in nats by importance sampling")
    dataset = "binarized_mnist"
    defaults = dict(epochs=50, batch_size=100, lr=1e-3, hidden=[200, 200], algorithm="rws", train_k=5,
                    q_update="wake+sleep", eval_k=5000, valid_k=100)
    monitor = ("valid_nll", "min")
    patience = None
    n_samples = 100
    setting_help = {
        "hidden": "widths of the stochastic hidden layers, bottom (next to x) to top",
        "algorithm": "ws (wake-sleep, Hinton et al. 1995) or rws (reweighted wake-sleep, Bornschein & Bengio 2015)",
        "train_k": "rws: samples from q(h|x) per training example, importance-weighted",
        "q_update": "rws: how the recognition net learns: wake (weighted samples from q), sleep (dreams from p) "
                    "or wake+sleep (their average, the paper's recommendation)",
        "eval_k": "importance samples per example for the test NLL (5000: the usual estimate; fewer is quicker)",
        "valid_k": "importance samples per example for the per-epoch validation NLL",
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
        if c["algorithm"] not in ("ws", "rws"):
            raise ValueError(f"algorithm must be 'ws' or 'rws', got {c['algorithm']!r}")
        if c["q_update"] not in ("wake", "sleep", "wake+sleep"):
            raise ValueError(f"q_update must be 'wake', 'sleep' or 'wake+sleep', got {c['q_update']!r}")
        self.rng = Generator([int(c["seed"]), 1])   # the training samples' and dreams' own stream (saved)
        # The visible biases start at the logits of the pixel frequencies, as for the RBM.
        return HelmholtzMachine(784, c["hidden"], visible_bias=base_rate_bias(self._train()))

    def train_dataset(self):
        return (self._train(),)

    # -- training -----------------------------------------------------------------------------
    def loss(self, model, batch):
        """The surrogate of one step, both phases: wake-sleep's, or reweighted wake-sleep's with
        train_k samples and the q_update of the settings."""
        x, = batch
        c = self.config
        if c["algorithm"] == "ws":
            return model.wake_sleep_loss(x, generator=self.rng)
        return model.reweighted_wake_sleep_loss(x, k=int(c["train_k"]), q_update=c["q_update"], generator=self.rng)

    def training_step(self, model, batch, optimizer):
        """Wake phase (p) and sleep and/or q-wake phase (q) in one Adam step on the sum of their
        losses: disjoint parameter sets, so each model gets its own phase's update (module docstring)."""
        from ..train import gradient_step
        return gradient_step(optimizer, self.loss(model, batch))

    def training_state(self, model):
        return {"rng": self.rng.get_state()}

    def load_training_state(self, model, state):
        if "rng" in state:
            self.rng.set_state(state["rng"])

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, model, split):
        """{split}_nll: mean -log p(x) in nats by importance sampling (valid_k samples for the
        validation split, eval_k otherwise), on the fixed binarization (or its fallback)."""
        from ..progress import progress
        x = self._split(split, self.config.get("limit_eval"))
        k = int(self.config["valid_k"] if split == "valid" else self.config["eval_k"])
        generator = Generator([int(self.config["seed"]), 2, SPLITS.get(split, 3)])
        blocks = range(0, len(x), EVAL_BATCH)
        total = 0.0
        for i in progress(blocks, total=len(blocks), desc=f"{split} NLL, k={k}", enabled=split != "valid"):
            total += float(model.importance_log_likelihood(x[i:i + EVAL_BATCH], k, generator=generator).sum())
        out = {f"{split}_nll": -total / len(x)}
        if split != "valid":
            out[f"{split}_eval_k"] = k
        return out

    # -- pictures -----------------------------------------------------------------------------
    def sample(self, model, n, path):
        """Ancestral samples from p, drawn as p(x = 1 | h_1) of each sample's h_1."""
        from ..plots import image_grid
        x = model.sample(n, generator=Generator([int(self.config["seed"]), 3]), probs=True)
        return image_grid(x.numpy().reshape(n, 28, 28), path, nrow=int(math.ceil(math.sqrt(n))),
                          title=f"Helmholtz machine ({self.config['algorithm']}): p(x | h_1), h ~ p")
