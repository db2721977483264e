"""A recipe: one headline number, and everything needed to reproduce it with one command.

    scratchgen reproduce made_mnist        trains `scratchgen train made` with the recipe's settings
                                           and budget, then prints ours against the expected and the
                                           paper's number
    scratchgen reproduce --list            every recipe, with its number and expected time

A recipe is data, not code: a registered model name (scratchgen.specs), the settings that differ
from that model's defaults, the metric of results.json it reproduces, the value we measured with
its tolerance, the paper's value for comparison, and the budget.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str                  # a name of scratchgen.specs (what `scratchgen train` trains)
    settings: dict              # config overrides: epochs, batch_size, lr, any --set key
    metric: str                 # the key of results.json that holds the number
    expected: float             # our number, measured with this recipe (see `measured`)
    tolerance: float            # how far a rerun may land from `expected` (seeds, machines)
    higher_is_better: bool      # for the wording only: which side of `expected` is good
    unit: str                   # "nats", "%", "FID", ...
    paper: float = None         # the paper's number, or None where the paper has none
    paper_source: str = ""      # which paper, which table
    data: str = ""              # which data and split the number is on
    budget: str = ""            # epochs and what bounds them, in words
    cpu_minutes: float = None   # expected wall time on a 2-core CPU at default threads
    gpu_minutes: float = None   # on one GPU (None: not measured)
    measured: str = ""          # when, where and with which command the expected number was measured
    docs: str = ""              # docs/models/<page>.md
    smoke: dict = field(default_factory=dict)   # a tiny budget for the CI smoke test

    def config(self, smoke=False):
        """The settings for `scratchgen train self.model` (the smoke budget on top with smoke=True)."""
        return {**self.settings, **(self.smoke if smoke else {})}

    def within_tolerance(self, value):
        return abs(float(value) - self.expected) <= self.tolerance

    def command(self):
        """The `scratchgen train` command this recipe runs."""
        flags = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "seed": "--seed",
                 "limit_train": "--limit-train", "limit_eval": "--limit-eval", "patience": "--patience"}
        parts = [f"scratchgen train {self.model}"]
        sets = []
        for k, v in self.settings.items():
            if k in flags:
                parts.append(f"{flags[k]} {v}")
            else:
                sets.append(f"{k}={_json(v)}")
        parts += [f"--set {item}" for item in sets]
        return " ".join(parts)


def _json(v):
    import json
    return json.dumps(v).replace(" ", "")
