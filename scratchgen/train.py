"""The one training loop: `fit(model, optimizer, loader, loss_fn, epochs, ...)`.

    history = fit(model, opt, loader, loss_fn, epochs=10,
                  valid_fn=lambda m: {"valid_loss": ...},          # run under no_grad, eval mode
                  metrics_path="run/metrics.jsonl",                # one JSON line per epoch
                  early_stopping=EarlyStopping("valid_loss", "min", patience=3),
                  checkpoint_dir="run")                            # checkpoint.npz + best.npz

Each epoch: a tqdm bar shows the running loss and examples/s; then `valid_fn` runs, the
scheduler steps, the record {epoch, train_loss, valid metrics, lr, time_s, examples_per_s}
is appended to `metrics_path`, and `checkpoint.npz` (latest) and `best.npz` (best validation
metric) are written atomically. Early stopping restores the best model's state at the end.

A step is `gradient_step(optimizer, loss_fn(model, batch))`: zero_grad, backward, a check that
the loss and every gradient are finite, optimizer.step. A model whose step is more than one
gradient step passes `training_step(model, batch, optimizer)` instead of loss_fn: a GAN's
discriminator steps before its generator step (Algorithm 1), a mask change before MADE's step.
It calls `gradient_step` for each update and returns the loss (and other scalars to log).
Losses stay pure functions of the model and the batch; after each step `fit` updates the
weight average (`ema`), if any.

Determinism: seed with `seed_everything(seed)` and give the DataLoader a seed; the same seed
then gives the same losses. To resume, load `checkpoint.npz` with `resume(...)` (or
`checkpoint.load_checkpoint`) and call `fit(..., start_epoch=ckpt_epoch)`: the losses match a
run that was never interrupted, bit for bit.
"""
import contextlib
import copy
import json
import math
import os
import random
import time

import numpy as np

from . import checkpoint as ckpt_lib
from .grad_mode import no_grad

__all__ = ["fit", "gradient_step", "EarlyStopping", "FitResult", "NonFiniteError", "seed_everything", "resume",
           "append_jsonl"]

CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"


def seed_everything(seed):
    """Seed scratchgen's global generator (and NumPy's and Python's global ones, for any code
    that uses them). DataLoaders take their own seed."""
    from .random import manual_seed
    manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class EarlyStopping:
    """Track the best value of a validation metric; stop after `patience` epochs without an
    improvement of more than `min_delta`. patience=None only tracks the best (model selection)."""

    def __init__(self, metric="valid_loss", mode="min", patience=5, min_delta=0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'min' or 'max', got {mode!r}")
        if patience is not None and patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1 epoch, or None to only track the best; "
                             f"got {patience}")
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, float(min_delta)
        self.best = None
        self.best_epoch = None
        self.bad_epochs = 0

    def is_better(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, metrics, epoch):
        """Record one epoch's metrics; return True if the monitored metric improved."""
        if self.metric not in metrics:
            raise KeyError(f"early stopping watches {self.metric!r}, but the epoch's metrics only have "
                           f"{sorted(metrics)}")
        value = float(metrics[self.metric])
        if math.isfinite(value) and self.is_better(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self):
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self):
        return {"metric": self.metric, "mode": self.mode, "patience": self.patience,
                "min_delta": self.min_delta, "best": self.best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.best = None if state.get("best") is None else float(state["best"])
        self.best_epoch = None if state.get("best_epoch") is None else int(state["best_epoch"])
        self.bad_epochs = int(state.get("bad_epochs", 0))

    def __repr__(self):
        return (f"EarlyStopping(metric={self.metric!r}, mode={self.mode!r}, patience={self.patience}, "
                f"best={self.best}, best_epoch={self.best_epoch})")


class FitResult:
    """What `fit` returns: the per-epoch records, plus where the best epoch was."""

    def __init__(self, history, best_epoch=None, best_metric=None, stopped_early=False, last_epoch=0):
        self.history = history
        self.best_epoch = best_epoch
        self.best_metric = best_metric
        self.stopped_early = stopped_early
        self.last_epoch = last_epoch

    @property
    def train_losses(self):
        return [r["train_loss"] for r in self.history]

    def __repr__(self):
        return (f"FitResult(epochs={len(self.history)}, last_epoch={self.last_epoch}, "
                f"best_epoch={self.best_epoch}, best_metric={self.best_metric}, "
                f"stopped_early={self.stopped_early})")


def append_jsonl(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_jsonl(path, last_epoch):
    """Keep only the records of epochs <= last_epoch (those a resumed checkpoint has seen)."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("epoch", 0) <= last_epoch:
                keep.append(line if line.endswith("\n") else line + "\n")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(keep)
    os.replace(tmp, path)


class NonFiniteError(FloatingPointError):
    """Training met a NaN or infinite loss or gradient; raised before the optimizer step, so the
    parameters (and the last checkpoint) are still good."""


def _non_finite(problem, epoch, step, checkpoint_dir):
    where = (f"; the last good state is {os.path.join(checkpoint_dir, CHECKPOINT_NAME)} (--resume continues "
             f"from it)" if checkpoint_dir and os.path.exists(os.path.join(checkpoint_dir, CHECKPOINT_NAME))
             else "")
    return (f"{problem} at epoch {epoch}, step {step + 1}, before the optimizer step{where}; "
            f"try a smaller learning rate, or sg.detect_anomaly() to find the op that made it")


def _first_non_finite_grad(optimizer):
    """The name (or index) of the first parameter whose gradient holds a NaN or infinity, else None.

    One BLAS dot product per parameter (the fastest full reduction here): g.g is finite for a
    finite g unless it overflows, and only then are the elements looked at one by one."""
    groups = getattr(optimizer, "param_groups", None) or []
    k = 0
    for group in groups:
        for p in group["params"]:
            g = getattr(p.grad, "data", p.grad)
            if g is not None:
                xp = getattr(p, "xp", np)
                flat = g.reshape(-1)
                total = xp.dot(flat, flat)
                if not math.isfinite(float(total)) and not bool(xp.isfinite(g).all()):
                    return getattr(p, "name", None) or f"parameter {k} (shape {tuple(g.shape)})"
            k += 1
    return None


def _split_loss(out):
    """loss_fn may return a scalar Tensor, or a dict with 'loss' and other scalars to log."""
    if isinstance(out, dict):
        if "loss" not in out:
            raise KeyError("a loss_fn (or training_step) that returns a dict must include the key 'loss'")
        return out["loss"], {k: v for k, v in out.items() if k != "loss"}
    return out, {}


def gradient_step(optimizer, loss):
    """One step of `optimizer` down `loss` (a scalar Tensor, or a dict with 'loss' and other
    scalars to log): zero_grad, backward, step. A NaN or infinite loss or gradient raises
    NonFiniteError before the step, so the parameters stay good. Returns the loss as a float
    (a dict of floats for a dict)."""
    loss, extras = _split_loss(loss)
    value = _float(loss)
    if not math.isfinite(value):
        raise NonFiniteError(f"loss is {value}")
    optimizer.zero_grad()
    loss.backward()
    bad = _first_non_finite_grad(optimizer)
    if bad is not None:
        raise NonFiniteError(f"gradient of {bad} is not finite")
    optimizer.step()
    return {"loss": value, **{k: _float(v) for k, v in extras.items()}} if extras else value


def _float(v):
    return float(v.item()) if hasattr(v, "item") else float(v)


def _lr(optimizer):
    if hasattr(optimizer, "param_groups") and optimizer.param_groups:
        return float(optimizer.param_groups[0].get("lr", float("nan")))
    lr = getattr(optimizer, "lr", None)
    return None if lr is None else float(lr)


def _averaged(ema):
    return ema.average_parameters() if ema is not None else contextlib.nullcontext()


def _copy_state(model):
    return copy.deepcopy(model.state_dict())


def _to_device(batch, device):
    if device is None or str(device) == "cpu":
        return batch
    return tuple(t.to(device) if hasattr(t, "to") else t for t in batch)


def _progress(iterable, total, desc, enabled):
    from .progress import progress
    return progress(iterable, total=total, desc=desc, enabled=enabled)


def _scheduler_step(scheduler, metrics, monitor):
    if scheduler is None:
        return
    if "Plateau" in type(scheduler).__name__ and monitor in metrics:
        scheduler.step(metrics[monitor])
    else:
        scheduler.step()


def fit(model, optimizer, train_loader, loss_fn=None, epochs=1, valid_fn=None, metrics_path=None,
        early_stopping=None, checkpoint_dir=None, start_epoch=0, scheduler=None, device=None,
        progress=True, log=print, restore_best=True, extra_state=None, ema=None, max_time=None,
        training_step=None):
    """Train `model` for epochs start_epoch+1 .. epochs; return a FitResult.

    loss_fn(model, batch) -> scalar Tensor, or {"loss": Tensor, other: scalar} (others are
        averaged over the epoch and logged as train_<name>). `batch` is the loader's tuple.
    training_step(model, batch, optimizer) -> float loss or {"loss": float, other: scalar}:
        instead of loss_fn, for a step that is more than one gradient step; it updates the
        parameters itself, with `gradient_step`. Give loss_fn or training_step, not both.
    valid_fn(model) -> dict of metrics, run in eval mode under no_grad after each epoch.
    early_stopping: EarlyStopping on one of valid_fn's metrics (or train_loss); with
        restore_best the model ends with the best epoch's weights.
    checkpoint_dir: writes checkpoint.npz every epoch and best.npz when the metric improves.
    start_epoch: epochs already done (after loading a checkpoint); metrics_path is cut back
        to those epochs so that a resumed file reads like an uninterrupted one.
    log: a function for one summary line per epoch (None for silence).
    ema: an optim.EMA of the model's parameters, updated after every step; validation, the best
        weights and best.npz then use the averaged weights (Polyak averaging). Without early
        stopping the model ends with its live weights: `ema.copy_to()` puts the averages in.
    extra_state: a dict, or a function returning one at each save, stored in the checkpoints
        (training state outside the model and optimizer: a mask schedule, a noise generator).
    max_time: a wall-clock budget in seconds; training stops after the first epoch that ends
        past it (the epoch in progress is finished, so checkpoints stay whole).
    """
    if (loss_fn is None) == (training_step is None):
        raise TypeError("fit needs exactly one of loss_fn (one gradient step per batch) and training_step")
    if training_step is None:
        training_step = lambda model, batch, optimizer: gradient_step(optimizer, loss_fn(model, batch))  # noqa: E731
    if max_time is not None and max_time <= 0:
        raise ValueError(f"max_time must be a positive number of seconds, got {max_time}")
    fit_start = time.perf_counter()
    metrics_path = os.fspath(metrics_path) if metrics_path else None
    checkpoint_dir = os.fspath(checkpoint_dir) if checkpoint_dir else None
    history = []
    best_state = None
    stopped_early = False
    epoch = start_epoch
    if metrics_path:
        os.makedirs(os.path.dirname(os.path.abspath(metrics_path)), exist_ok=True)
        if start_epoch > 0:
            _truncate_jsonl(metrics_path, start_epoch)
        elif os.path.exists(metrics_path):
            os.remove(metrics_path)
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
    total_batches = len(train_loader) if hasattr(train_loader, "__len__") else None
    if early_stopping is not None and early_stopping.should_stop:  # resumed after it had stopped
        stopped_early, epochs = True, start_epoch

    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum, seen, extra_sums = 0.0, 0, {}
        bar = _progress(train_loader, total_batches, f"epoch {epoch}/{epochs}", progress)
        for i, batch in enumerate(bar):
            batch = _to_device(batch if isinstance(batch, (tuple, list)) else (batch,), device)
            n = len(batch[0])
            try:
                loss, extras = _split_loss(training_step(model, batch, optimizer))
            except NonFiniteError as e:
                raise NonFiniteError(_non_finite(str(e), epoch, i, checkpoint_dir)) from None
            value = _float(loss)
            if not math.isfinite(value):   # a training_step that reports a loss it did not check
                raise NonFiniteError(_non_finite(f"loss is {value}", epoch, i, checkpoint_dir))
            if ema is not None:
                ema.update()
            loss_sum += value * n
            seen += n
            for k, v in extras.items():
                extra_sums[k] = extra_sums.get(k, 0.0) + _float(v) * n
            if progress and i % 10 == 0:
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", ex_s=f"{rate:.0f}", refresh=False)
        if progress and hasattr(bar, "close"):
            bar.close()
        train_time = time.perf_counter() - t0
        record = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1)}
        record.update({f"train_{k}": v / max(seen, 1) for k, v in extra_sums.items()})

        if valid_fn is not None:
            model.eval()
            with no_grad(), _averaged(ema):
                metrics = valid_fn(model)
            model.train()
            record.update({k: _float(v) for k, v in metrics.items()})
        lr = _lr(optimizer)
        if lr is not None:
            record["lr"] = lr
        _scheduler_step(scheduler, record, early_stopping.metric if early_stopping else None)
        record["time_s"] = round(time.perf_counter() - t0, 4)
        record["examples_per_s"] = round(seen / max(train_time, 1e-9), 1)

        improved = False
        if early_stopping is not None:
            improved = early_stopping.update(record, epoch)
            if improved:
                with _averaged(ema):
                    best_state = _copy_state(model)
                    if checkpoint_dir:
                        ckpt_lib.save_checkpoint(os.path.join(checkpoint_dir, BEST_NAME), model, epoch=epoch,
                                                 best_metric=early_stopping.best,
                                                 extra=extra_state() if callable(extra_state) else extra_state)
        # The epoch's line goes in before the checkpoint that includes it: a kill between the two
        # leaves a line past the checkpoint's epoch, which a resume cuts off and writes again.
        if metrics_path:
            append_jsonl(metrics_path, record)
        if checkpoint_dir:
            extra = extra_state() if callable(extra_state) else extra_state
            extra = dict(extra or {}, ema=ema.state_dict()) if ema is not None else extra
            ckpt_lib.save_checkpoint(
                os.path.join(checkpoint_dir, CHECKPOINT_NAME), model, optimizer, scheduler, epoch=epoch,
                loader=train_loader, early_stopping=early_stopping,
                best_metric=early_stopping.best if early_stopping else None, extra=extra)
        history.append(record)
        if log:
            shown = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in record.items() if k not in ("epoch", "time_s", "examples_per_s", "lr"))
            log(f"epoch {epoch}/{epochs}  {shown}  {record['time_s']:.1f}s  "
                f"{record['examples_per_s']:.0f} ex/s{'  *' if improved else ''}")
        if early_stopping is not None and early_stopping.should_stop:
            stopped_early = True
            if log:
                log(f"early stopping: no improvement of {early_stopping.metric} for "
                    f"{early_stopping.bad_epochs} epochs (best {early_stopping.best:.4f} at epoch "
                    f"{early_stopping.best_epoch})")
            break
        if max_time is not None and time.perf_counter() - fit_start >= max_time:
            if log:
                log(f"time budget of {max_time:.0f}s reached after epoch {epoch}")
            break

    if early_stopping is not None and restore_best and early_stopping.best_epoch is not None:
        if best_state is not None:
            model.load_state_dict(best_state)
        elif checkpoint_dir and os.path.exists(os.path.join(checkpoint_dir, BEST_NAME)):
            # the best epoch came before a resume: its weights are on disk
            ckpt_lib.load_checkpoint(os.path.join(checkpoint_dir, BEST_NAME), model=model, restore_rng=False)
    return FitResult(history, early_stopping.best_epoch if early_stopping else None,
                     early_stopping.best if early_stopping else None, stopped_early, epoch)


def resume(checkpoint_dir, model, optimizer=None, scheduler=None, loader=None, early_stopping=None, ema=None,
           load_extra=None):
    """Load checkpoint.npz from `checkpoint_dir` into the given objects (and the global RNG);
    return the number of epochs it had completed, to pass to fit(start_epoch=...).
    `load_extra(extra)` receives the checkpoint's extra_state dict (see fit)."""
    path = os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_NAME)
    ckpt = ckpt_lib.load_checkpoint(path, model, optimizer, scheduler, loader, early_stopping)
    if ema is not None:
        if "ema" not in ckpt["extra"]:
            raise ValueError(f"{path} holds no weight averages (was it trained without ema?)")
        ema.load_state_dict(ckpt["extra"]["ema"])
    if load_extra is not None:
        load_extra(ckpt["extra"])
    return ckpt["epoch"]
