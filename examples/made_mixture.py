"""A mixture of separately trained MADEs on binarized MNIST:

    p(x) = sum_k pi_k p_k(x),   log p(x) = logsumexp_k (log pi_k + log p_k(x)).

MADE's own ensemble (--num-masks) shares one set of weights across K orderings; here every
member is a whole MADE with its own ordering, connectivity and weights, so the ensemble costs
K times the parameters. Each RUN is the --out folder of an examples/made_mnist.py run: its
results.json gives the architecture, its best.npz the weights.

Members are chosen on the validation set by greedy forward selection with replacement
(Caruana et al. 2004): start from the best run, then keep adding the run that lowers the
mixture's validation NLL most, until none does or --max-members is reached. A run picked m
times out of K gets pi = m / K. The test set is scored once, with the chosen mixture.

    python examples/made_mixture.py runs/made_a runs/made_b runs/made_c --out runs/made_mixture
"""
import argparse
import json
import math
import os
import time

import numpy as np

import scratchgen as sg
from scratchgen.data import load_binarized_mnist
from scratchgen.models import MADE, Mixture
from scratchgen.plots import image_grid


def load_run(path, device="cpu"):
    """The best weights of one made_mnist.py run, as a MADE on `device`."""
    config_path, weights_path = os.path.join(path, "results.json"), os.path.join(path, "best.npz")
    for needed in (config_path, weights_path):
        if not os.path.exists(needed):
            raise FileNotFoundError(f"{needed} not found: a RUN must be the --out folder of a finished "
                                    f"examples/made_mnist.py run trained without --no-checkpoint")
    with open(config_path) as f:
        c = json.load(f).get("config")
    if not c:
        raise ValueError(f"{config_path} has no 'config' entry (the architecture), so the run cannot be rebuilt: "
                         f"it was not written by examples/made_mnist.py; leave this run out")
    model = MADE(784, c["hidden"], num_masks=c["num_masks"], natural_ordering=bool(c["natural_ordering"]),
                 direct_connection=bool(c["direct"]), seed=c["seed"])
    state = sg.load(weights_path)
    model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    return model.to(device)


@sg.no_grad()
def log_probs(model, x, batch=1000):
    """log p(x) per example, as float64 NumPy (a run trained with K masks uses its K-mask ensemble)."""
    return np.concatenate([model.log_prob(x[i:i + batch]).numpy() for i in range(0, len(x), batch)]).astype(np.float64)


def mixture_nll(scores, counts):
    """Mean NLL of the mixture with weights counts / counts.sum(); scores: (runs, examples)."""
    keep = counts > 0
    log_pi = np.log(counts[keep] / counts.sum())[:, None]
    return -float(sg.tensor(scores[keep] + log_pi).logsumexp(axis=0).mean().item())


def select_members(valid_scores, max_members):
    """Greedy forward selection with replacement on validation; returns how often each run is picked."""
    counts = np.zeros(len(valid_scores), dtype=np.int64)
    counts[np.argmax(valid_scores.mean(axis=1))] = 1
    best = mixture_nll(valid_scores, counts)
    while counts.sum() < max_members:
        trials = []
        for j in range(len(counts)):
            trial = counts.copy()
            trial[j] += 1
            trials.append((mixture_nll(valid_scores, trial), j))
        nll, j = min(trials)
        if nll >= best:
            break
        counts[j] += 1
        best = nll
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="--out folders of examples/made_mnist.py runs")
    p.add_argument("--max-members", type=int, default=32, help="most picks in the greedy selection")
    p.add_argument("--device", default="cpu", help="cpu or cuda (CuPy)")
    p.add_argument("--seed", type=int, default=0, help="for the samples")
    p.add_argument("--out", default="runs/made_mixture")
    args = p.parse_args()
    if args.max_members < 1:
        p.error(f"--max-members must be >= 1, got {args.max_members}")
    os.makedirs(args.out, exist_ok=True)
    start = time.time()

    valid, test = load_binarized_mnist("valid"), load_binarized_mnist("test")
    models, valid_scores, test_scores = [], [], []
    for run in args.runs:
        model = load_run(run, args.device)
        models.append(model)
        valid_scores.append(log_probs(model, valid))
        test_scores.append(log_probs(model, test))
        print(f"{run}: valid NLL {-valid_scores[-1].mean():.3f}, test NLL {-test_scores[-1].mean():.3f}")
    valid_scores, test_scores = np.stack(valid_scores), np.stack(test_scores)

    counts = select_members(valid_scores, args.max_members)
    chosen = np.flatnonzero(counts)
    mixture = Mixture([models[i] for i in chosen], weights=counts[chosen])
    test_nll = -float(log_probs(mixture, test).mean())   # the library's Mixture, scored once
    results = {
        "valid_nll": mixture_nll(valid_scores, counts), "test_nll": test_nll,
        "test_bits_per_dim": test_nll / (784 * math.log(2)),
        "members": [{"run": args.runs[i], "weight": float(counts[i] / counts.sum()), "picks": int(counts[i]),
                     "valid_nll": float(-valid_scores[i].mean()), "test_nll": float(-test_scores[i].mean())}
                    for i in chosen],
        "parameters": int(sum(w.data.size for i in chosen for w in models[i].parameters())),
        "unused_runs": [args.runs[i] for i in range(len(args.runs)) if counts[i] == 0],
        "time_s": round(time.time() - start, 1), "config": vars(args),
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    samples = mixture.sample(64, generator=sg.manual_seed(args.seed)).numpy()
    image_grid(samples.reshape(64, 28, 28), os.path.join(args.out, "samples.png"), nrow=8)
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))
    print(f"mixture of {len(chosen)} MADEs ({counts.sum()} picks): test NLL {test_nll:.2f} nats "
          f"(valid {results['valid_nll']:.2f})")


if __name__ == "__main__":
    main()
