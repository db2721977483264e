"""`scratchgen train nade`: NADE (scratchgen.models.nade) on binarized MNIST, exact NLL in nats.

Data: Larochelle & Murray's fixed binarization (`load_binarized`: 50,000 / 10,000 / 10,000, the
NADE paper's own split), or its announced fallback on a fresh install.

Two models: the 2011 NADE in the natural (raster) ordering, scored exactly (`{split}_nll`); and,
with `order_agnostic=true`, the one-hidden-layer DeepNADE of Uria et al. 2014 trained on random
orderings and split points, scored as an ensemble of K orderings (log-mean-exp of their
probabilities): K=1 on the validation split after each epoch (one ordering keeps the epochs
cheap), K=`test_orderings` on the test split. The 2011 paper trained with SGD; this spec uses Adam.
"""
import math

from ..data import load_binarized
from ..grad_mode import no_grad
from ..models.nade import NADE
from ..random import Generator
from .registry import ModelSpec, register


@register("nade")
class NADESpec(ModelSpec):
    description = "NADE on binarized MNIST (Larochelle split), exact NLL in nats (order-agnostic: K-ordering ensemble)"
    dataset = "binarized_mnist"
    defaults = dict(epochs=50, batch_size=100, lr=1e-3, hidden=500, order_agnostic=False, test_orderings=16,
                    activation=None)
    monitor = ("valid_nll", "min")
    patience = 10
    eval_batch = 100  # examples per forward pass when scoring: the reference pass (CuPy, or forced) holds (batch, 784, hidden) arrays; the Numba kernel O(batch * hidden)
    setting_help = {
        "hidden": "hidden units (one layer; W is hidden x 784)",
        "order_agnostic": "train on a random ordering and split point per example, with the mask as "
                          "extra input (Uria et al. 2014), instead of the fixed raster ordering",
        "test_orderings": "orderings K averaged (in probability) for the order-agnostic model's test NLL; "
                          "validation uses 1",
        "activation": "hidden units: sigmoid or relu (None: sigmoid for NADE, relu for order-agnostic, "
                      "as in the papers)",
    }

    def _activation(self):
        a = self.config.get("activation")
        return a or ("relu" if self.config["order_agnostic"] else "sigmoid")

    def build(self):
        c = self.config
        return NADE(784, int(c["hidden"]), order_agnostic=c["order_agnostic"], activation=self._activation(),
                    seed=c["seed"])

    def _split(self, split, limit=None):
        return load_binarized(split, limit=limit)

    def train_dataset(self):
        return (self._split("train", self.config.get("limit_train")),)

    def _orderings_rng(self):
        # The random orderings and split points of order-agnostic training: a stream of its own,
        # saved in training_state, so a resumed run draws what an uninterrupted one would.
        if not hasattr(self, "_masks"):
            self._masks = Generator([int(self.config["seed"]), 26])
        return self._masks

    def loss(self, model, batch):
        x, = batch
        if model.order_agnostic:
            return model.order_agnostic_loss(x, generator=self._orderings_rng()).mean()
        return -model.log_prob(x).mean()

    def training_state(self, model):
        return {"orderings": self._masks.get_state()} if hasattr(self, "_masks") else {}

    def load_training_state(self, model, state):
        if "orderings" in state:
            self._orderings_rng().set_state(state["orderings"])

    def evaluate(self, model, split):
        x = self._split(split, self.config.get("limit_eval"))
        K = 1 if split == "valid" or not model.order_agnostic else int(self.config["test_orderings"])
        total = 0.0
        with no_grad():
            for i in range(0, len(x), self.eval_batch):
                total += float(model.ensemble_log_prob(x[i:i + self.eval_batch], K).sum().item())
        metrics = {f"{split}_nll": -total / len(x)}
        if K > 1:
            metrics[f"{split}_orderings"] = K
        return metrics

    def sample(self, model, n, path):
        from ..plots import image_grid
        return image_grid(model.sample(n).numpy().reshape(n, 28, 28), path, nrow=int(math.sqrt(n)))
