"""`scratchgen train made`: MADE (scratchgen.models.made) on binarized MNIST, exact test NLL in nats."""
import math

from ..data import load_binarized
from ..grad_mode import no_grad
from ..models.made import MADE
from .registry import ModelSpec, register


@register("made")
class MADESpec(ModelSpec):
    description = "MADE on binarized MNIST (Larochelle split), exact NLL in nats"
    dataset = "binarized_mnist"
    # A random ordering, the direct connection, weight decay 1e-3 and a step decay at epoch 90:
    # the best 500-unit recipe found (the made_mnist recipe); larger layers are the made_best one.
    defaults = dict(epochs=100, batch_size=100, lr=1e-3, hidden=[500], num_masks=1, resample_every=1,
                    natural_ordering=False, direct_connection=True, weight_decay=1e-3, lr_step=90)
    monitor = ("valid_nll", "min")
    patience = 15

    def build(self):
        c = self.config
        return MADE(784, c["hidden"], num_masks=c["num_masks"], natural_ordering=c["natural_ordering"],
                    direct_connection=c["direct_connection"], seed=c["seed"])

    def make_scheduler(self, optimizer):
        from ..optim.lr_scheduler import StepLR
        if self.config["lr_step"]:
            return StepLR(optimizer, self.config["lr_step"], gamma=0.1)
        return super().make_scheduler(optimizer)

    def _split(self, split, limit=None):
        return load_binarized(split, limit=limit)

    def train_dataset(self):
        return (self._split("train", self.config.get("limit_train")),)

    def training_step(self, model, batch, optimizer):
        # Order-agnostic training (Section 5): the next mask set every `resample_every` steps.
        if model.num_masks > 1:
            self._steps = getattr(self, "_steps", 0) + 1
            if self._steps % self.config["resample_every"] == 0:
                model.next_mask()
        return super().training_step(model, batch, optimizer)

    def loss(self, model, batch):
        x, = batch
        return -model.log_prob_one_mask(x).mean()

    def training_state(self, model):
        return {"steps": getattr(self, "_steps", 0), "mask_index": model.mask_index}

    def load_training_state(self, model, state):
        self._steps = int(state.get("steps", 0))
        model.set_mask(int(state.get("mask_index", model.mask_index)))

    def evaluate(self, model, split):
        x = self._split(split, self.config.get("limit_eval"))
        total = 0.0
        with no_grad():
            for i in range(0, len(x), 1000):
                total += float(model.log_prob(x[i:i + 1000]).sum().item())
        return {f"{split}_nll": -total / len(x)}

    def sample(self, model, n, path):
        from ..plots import image_grid
        return image_grid(model.sample(n).numpy().reshape(n, 28, 28), path, nrow=int(math.sqrt(n)))
