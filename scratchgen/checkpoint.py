"""Atomic training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint (an .npz file written with scratchgen.serialization.save) holds

    model         the model's state_dict
    optimizer     the optimizer's state_dict (moments, step counts, learning rates)
    scheduler     the learning-rate scheduler's state_dict
    rng           the global generator's state and the data loader's state (its shuffling RNG)
    early_stopping, best_metric, epoch, and any `extra` values

so that resuming from it gives bit-identical losses to a run that was never interrupted.

Writes are atomic: the file is written under a temporary name in the same folder and then
renamed over the old one, so a crash or an error during a save leaves the previous
checkpoint intact and never a half-written file.

The file is an ordinary `sg.load`-able checkpoint: `serialization.load(path)["model"]` is a
state_dict. Python numbers, strings, None and the RNG's 128-bit integers come back exactly.
"""
import copy
import os

FORMAT = "scratchgen-checkpoint"
VERSION = 1

__all__ = ["save_checkpoint", "load_checkpoint", "get_rng_state", "set_rng_state"]


# -- random number generator state ------------------------------------------------------------------
def get_rng_state():
    """A copy of the global generator's state (a dict; its 128-bit integers are saved exactly)."""
    from .random import default_generator
    return copy.deepcopy(default_generator.get_state())


def set_rng_state(state):
    from .random import default_generator
    default_generator.set_state(state)


# -- checkpoints --------------------------------------------------------------------------------------
def _state(obj):
    return obj.state_dict() if obj is not None and hasattr(obj, "state_dict") else None


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=0, loader=None,
                    early_stopping=None, best_metric=None, extra=None):
    """Write an atomic checkpoint of a training run to `path` (.npz); return the path."""
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": _state(optimizer),
        "scheduler": _state(scheduler),
        "rng": {"global": get_rng_state(), "loader": _state(loader)},
        "early_stopping": _state(early_stopping),
        "best_metric": None if best_metric is None else float(best_metric),
        "extra": extra or {},
    }
    from . import serialization
    serialization.save(ckpt, path)  # atomic: temp file, fsync, rename
    return os.fspath(path)


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, loader=None,
                    early_stopping=None, restore_rng=True):
    """Read a checkpoint; load its states into whichever objects are given (in place) and,
    unless restore_rng=False, restore the global generator. Returns the checkpoint dict
    (epoch, best_metric, extra, and the raw states)."""
    from . import serialization
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = serialization.load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path} is not a scratchgen checkpoint (no 'model' entry)")
    rng = ckpt.get("rng") or {}
    pairs = [(obj, key, ckpt.get(key)) for obj, key in [(model, "model"), (optimizer, "optimizer"),
                                                        (scheduler, "scheduler"), (early_stopping, "early_stopping")]
             if obj is not None]
    for obj, key, state in pairs:
        if state is None:
            raise ValueError(f"checkpoint {path} has no {key} state to load")
    if loader is not None and rng.get("loader") is not None:
        pairs.append((loader, "loader", rng["loader"]))
    # All or nothing: a load that fails part-way (a shape, an optimizer of another kind) puts back
    # what the earlier loads changed, so the objects are never half from the file.
    backups = [(obj, copy.deepcopy(obj.state_dict())) for obj, _, _ in pairs]
    try:
        for obj, key, state in pairs:
            obj.load_state_dict(state)
    except Exception as e:
        for obj, before in backups:
            obj.load_state_dict(before)
        raise type(e)(f"{path}: {e} (nothing was loaded)") from e
    if restore_rng and rng.get("global") is not None:
        set_rng_state(rng["global"])
    ckpt["epoch"] = int(ckpt.get("epoch") or 0)
    return ckpt
