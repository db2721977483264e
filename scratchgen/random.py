"""Seedable random numbers: a global generator (`manual_seed`) and `Generator` objects."""
import contextlib
import random

import numpy as np


class Generator:
    """A reproducible stream (NumPy PCG64 underneath) whose state can be saved and restored."""

    def __init__(self, seed=None):
        self.manual_seed(seed)

    def manual_seed(self, seed):
        self.rng = np.random.default_rng(seed)
        return self

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


default_generator = Generator()


def manual_seed(seed):
    """Seed the global generator used when no `generator=` is given."""
    default_generator.manual_seed(seed)
    return default_generator


def rng(generator=None):
    return (generator or default_generator).rng


@contextlib.contextmanager
def fork_rng():
    """Run a block without disturbing the global random streams (scratchgen's, NumPy's and Python's):
    whatever it draws or seeds, they continue afterwards as if it had not run (torch.random.fork_rng).
    Evaluation code uses it, so that scoring a model never changes the training run around it."""
    states = default_generator.get_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        default_generator.set_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
