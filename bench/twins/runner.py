"""The run around a twin model: what `scratchgen train` (scratchgen/cli.py cmd_train) and its
`fit` (scratchgen/train.py) do besides the model's own steps, done with torch.

    run(twin, args)   config.json, seeded model and optimizer, shuffled batches, one training
                      pass per epoch, validation (eval mode, no_grad), scheduler, metrics.jsonl
                      (fsync per line), best.pt when the monitored metric improves and
                      checkpoint.pt (model, optimizer, scheduler, loader and RNG state, and the
                      twin's training_state, e.g. an RBM's chains) every epoch, both fsynced
                      and renamed into place; then the best weights back,
                      the test split, the model's pictures, curves.png and results.json.

Data and pictures use scratchgen's own NumPy/matplotlib files (scratchgen/data/, plots.py,
metrics/scores.py), loaded standalone by `sg_module`: the same file parsing, the same figures.
Importing the scratchgen package itself would load its engine and its thread policy
(scratchgen/threads.py sets OMP_WAIT_POLICY), which must not touch the torch process.
"""
import copy
import importlib.util
import json
import math
import os
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(REPO, "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

_loaded = {}


def sg_module(rel):
    """A scratchgen file or package that needs only NumPy/SciPy/matplotlib ('data', 'plots',
    'metrics/scores'), imported from the source tree without importing the scratchgen package."""
    if rel in _loaded:
        return _loaded[rel]
    path = os.path.join(REPO, "scratchgen", rel)
    name = "_sg_" + rel.replace("/", "_")
    if os.path.isdir(path):
        spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"),
                                                      submodule_search_locations=[path])
    else:
        spec = importlib.util.spec_from_file_location(name, path + ".py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    _loaded[rel] = mod
    return mod


def data():
    return sg_module("data")


def plots():
    return sg_module("plots")


def _fsync_write(path, write):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_pt(obj, path):
    """torch.save, atomically and durably, as scratchgen.serialization.save writes its .npz."""
    _fsync_write(path, lambda f: torch.save(obj, f))


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def append_jsonl(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


class Twin:
    """What a twin provides (the torch side of a ModelSpec). `config` holds the CLI run's settings."""
    defaults = {}
    monitor = ("valid_loss", "min")
    patience = None

    def __init__(self, config):
        self.config = {"seed": 0, **self.defaults, **{k: v for k, v in config.items() if v is not None}}

    def build(self):
        raise NotImplementedError

    def make_optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=self.config["lr"])

    def make_scheduler(self, optimizer):
        return None

    def train_dataset(self):
        raise NotImplementedError

    def loss(self, model, batch):
        raise NotImplementedError

    def evaluate(self, model, split):
        raise NotImplementedError

    def visualize(self, model, out):
        raise NotImplementedError

    def describe_data(self):
        return data().describe_mnist_source()

    def training_state(self):
        """State outside the model and optimizer (persistent chains, a sampler's generator),
        saved in checkpoint.pt and best.pt as the spec's training_state goes into the .npz."""
        return {}


def batches(arrays, batch_size, seed, epoch):
    """One shuffled epoch as scratchgen.data.DataLoader(shuffle=True, seed=seed) draws it: a
    permutation from default_rng([seed, epoch]), copied rows, then tensors (torch.from_numpy)."""
    n = len(arrays[0])
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for b in range(-(-n // batch_size)):
        index = order[b * batch_size:min((b + 1) * batch_size, n)]
        yield tuple(torch.from_numpy(np.array(a[index])) for a in arrays)


def _item(v):
    return float(v.item()) if hasattr(v, "item") else float(v)


def run(twin, args, log=print):
    """`scratchgen train` for a twin; returns results (also written to OUT/results.json)."""
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    c = twin.config
    out = args.out
    os.makedirs(out, exist_ok=True)
    log(f"model: {twin.name} (torch twin, {torch.get_num_threads()} threads)")
    write_json(os.path.join(out, "config.json"), {"model": twin.name, "framework": "torch", **c,
                                                  "torch": torch.__version__, "threads": torch.get_num_threads()})
    torch.manual_seed(int(c["seed"]))
    np.random.seed(int(c["seed"]))
    model = twin.build()
    optimizer = twin.make_optimizer(model)
    scheduler = twin.make_scheduler(optimizer)
    arrays = twin.train_dataset()
    metric, mode = twin.monitor
    patience = c.get("patience", twin.patience) or None
    metrics_path = os.path.join(out, "metrics.jsonl")
    if os.path.exists(metrics_path):
        os.remove(metrics_path)
    best, best_epoch, best_state, bad = None, None, None, 0
    epochs, bs, seed = int(c["epochs"]), int(c["batch_size"]), int(c["seed"])
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum, seen, extra_sums = 0.0, 0, {}
        for i, batch in enumerate(batches(arrays, bs, seed, epoch - 1)):
            n = len(batch[0])
            optimizer.zero_grad()
            out_ = twin.loss(model, batch)
            loss, extras = (out_["loss"], {k: v for k, v in out_.items() if k != "loss"}) \
                if isinstance(out_, dict) else (out_, {})
            loss.backward()
            optimizer.step()
            value = float(loss.item())
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at epoch {epoch}, batch {i}")
            loss_sum += value * n
            seen += n
            for k, v in extras.items():
                extra_sums[k] = extra_sums.get(k, 0.0) + _item(v) * n
        train_time = time.perf_counter() - t0
        record = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1)}
        record.update({f"train_{k}": v / max(seen, 1) for k, v in extra_sums.items()})
        model.eval()
        with torch.no_grad():
            record.update({k: _item(v) for k, v in twin.evaluate(model, "valid").items()})
        model.train()
        record["lr"] = float(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step()
        record["time_s"] = round(time.perf_counter() - t0, 4)
        record["examples_per_s"] = round(seen / max(train_time, 1e-9), 1)
        value = float(record[metric])
        improved = math.isfinite(value) and (best is None or (value < best if mode == "min" else value > best))
        if improved:
            best, best_epoch, bad = value, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            save_pt({"model": best_state, "epoch": epoch, "best_metric": best, "spec": twin.training_state()},
                    os.path.join(out, "best.pt"))
        else:
            bad += 1
        save_pt({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None, "epoch": epoch,
                 "loader": {"seed": seed, "epoch": epoch, "batch": 0}, "rng": torch.get_rng_state(),
                 "early_stopping": {"best": best, "best_epoch": best_epoch, "bad_epochs": bad},
                 "spec": twin.training_state()},
                os.path.join(out, "checkpoint.pt"))
        append_jsonl(metrics_path, record)
        log(f"epoch {epoch}/{epochs}  " + " ".join(f"{k} {v:.4f}" for k, v in record.items()
                                                   if k not in ("epoch", "time_s", "examples_per_s", "lr"))
            + f"  {record['time_s']:.1f}s")
        if patience is not None and bad >= patience:
            break
    train_time = time.perf_counter() - t_start
    if best_state is not None:
        model.load_state_dict(best_state)
    # As cmd_train: the test split right after fit, in eval mode and without a graph.
    t_test = time.perf_counter()
    model.eval()
    with torch.no_grad():
        test_metrics = {k: _item(v) for k, v in twin.evaluate(model, "test").items()}
    t_pictures = time.perf_counter()
    results = {"model": twin.name, "framework": "torch", "best_epoch": best_epoch, "monitor": metric,
               f"best_{metric}": best, "epochs_run": epoch,
               "stopped_early": patience is not None and bad >= patience, **test_metrics,
               "train_wall_s": round(train_time, 2), "data_source": twin.describe_data()}
    with torch.no_grad():
        twin.visualize(model, out)
    plots().curves(metrics_path, os.path.join(out, "curves.png"), title=f"{twin.name}: training curves")
    results["test_s"] = round(t_pictures - t_test, 2)
    results["pictures_s"] = round(time.perf_counter() - t_pictures, 2)
    results["total_wall_s"] = round(time.perf_counter() - t_start, 2)
    write_json(os.path.join(out, "results.json"), results)
    log("test: " + "  ".join(f"{k} {v:.4f}" for k, v in test_metrics.items())
        + f"  (test {results['test_s']:.1f}s, pictures {results['pictures_s']:.1f}s, total {results['total_wall_s']:.1f}s)")
    return results
