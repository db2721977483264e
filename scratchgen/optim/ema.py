"""An exponential moving average of parameters (Polyak-Ruppert averaging with a forgetting factor):

    shadow <- decay * shadow + (1 - decay) * param        after every optimizer step.

GAN generators are usually evaluated with such averaged weights (Yazici et al. 2019, "The unusual
effectiveness of averaging in GAN training"): the average sits near the centre of the orbit the
adversarial game traces around an equilibrium, where the last iterate keeps oscillating.
"""
import contextlib

import numpy as np

from .. import backend


class EMA:
    """ema = EMA(model.parameters(), decay=0.999); after each opt.step(): ema.update();
    to evaluate: `with ema.average_parameters(): ...` (the live weights come back afterwards)."""

    def __init__(self, parameters, decay=0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.params = list(parameters)
        self.decay = float(decay)
        self.shadow = [p.data.copy() for p in self.params]
        self.num_updates = 0

    def update(self):
        for s, p in zip(self.shadow, self.params):
            s *= self.decay
            s += (1.0 - self.decay) * p.data
        self.num_updates += 1

    def copy_to(self, parameters=None):
        """Write the averages into the parameters' arrays in place (anyone holding them sees the averages)."""
        for s, p in zip(self.shadow, self.params if parameters is None else list(parameters)):
            p.data[...] = s

    @contextlib.contextmanager
    def average_parameters(self):
        live = [p.data.copy() for p in self.params]
        self.copy_to()
        try:
            yield self
        finally:
            for a, p in zip(live, self.params):
                p.data[...] = a

    def state_dict(self):
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": [backend.to_device(s, "cpu") for s in self.shadow]}

    def load_state_dict(self, state):
        shadow = list(state["shadow"])
        if len(shadow) != len(self.params):
            raise ValueError(f"the state holds {len(shadow)} averages for {len(self.params)} parameters")
        for i, (s, p) in enumerate(zip(shadow, self.params)):
            if tuple(np.shape(s)) != p.shape:
                raise ValueError(f"average {i} has shape {np.shape(s)}, its parameter {p.shape}")
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
        self.shadow = [backend.to_device(np.asarray(s, dtype=p.dtype), p.device) for s, p in zip(shadow, self.params)]
