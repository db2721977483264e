"""The `scratchgen` command line.

    scratchgen train MODEL [--data DIR] [--epochs N] [--batch-size N] [--lr F] [--seed N]
                           [--device cpu|cuda] [--out DIR] [--resume] [--limit-train N] ...
    scratchgen sample RUN_DIR [--n N]
    scratchgen evaluate RUN_DIR [--split test]
    scratchgen reproduce RECIPE [--out DIR] [--smoke]      a headline number, from its recipe
    scratchgen reproduce --list
    scratchgen models
    scratchgen data list
    scratchgen data download NAME

A run folder (default runs/<model>-<timestamp>) gets config.json, metrics.jsonl,
checkpoint.npz (latest epoch), best.npz (best validation metric), results.json (final test
metrics), samples.png (for an autoencoder, which has no prior, reconstructions.png) and
curves.png. `--resume` continues the run in --out from its checkpoint, exactly as if it had
never stopped.
"""
import argparse
import contextlib
import json
import os
import re
import sys
import time

DATA_ENV = "SCRATCHGEN_DATA"


class CLIError(Exception):
    """An error the user can fix; printed without a traceback."""


# -- helpers ------------------------------------------------------------------------------------------
def _say(*args):
    print(*args, flush=True)


def _count(minimum):
    """An argparse type: a whole number >= minimum, with a message naming the rule."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def _positive_float(text):
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _check_device(device):
    if device == "cuda":
        from . import backend
        try:
            backend.cupy().cuda.runtime.getDeviceCount()
        except Exception as e:  # noqa: BLE001 - no CuPy, no driver or no GPU: one line either way
            raise CLIError(f"--device cuda: {e}" if isinstance(e, RuntimeError) and "CuPy" in str(e)
                           else f"--device cuda: no usable GPU ({type(e).__name__}: {e}); use --device cpu") from None


def _same_source(recorded, now):
    """Two data descriptions name the same data, the paths in them compared normalized (a run
    recorded before data roots were normalized says /work/main/../data where now is /work/data)."""
    norm = lambda s: re.sub(r"/[^\s()]*", lambda m: os.path.normpath(m.group(0)), s)  # noqa: E731
    return recorded == now or norm(recorded) == norm(now)


def _set_data_root(path):
    """Point the data module at `path` (the --data flag wins over $SCRATCHGEN_DATA)."""
    if path is None:
        return
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise CLIError(f"--data {path}: no such directory")
    os.environ[DATA_ENV] = path


def _limit_threads(args, spec=None):
    """--threads, else $SCRATCHGEN_THREADS, else the default policy (scratchgen/threads.py)."""
    from . import threads
    n = getattr(args, "threads", None)
    if n is not None and n < 1:
        raise CLIError(f"--threads {n}: give a thread count >= 1 (or leave it out for the default)")
    try:
        applied = threads.set_threads(n)
    except ValueError as e:
        raise CLIError(str(e)) from None
    args.cleanup.callback(threads.set_threads, None)  # in-process callers (tests) get the default back
    return applied


LOCK_NAME = ".lock"


def _lock_run_folder(out, cleanup):
    """Hold an exclusive lock on the run folder for the whole command, so that a second run on
    the same --out stops at once instead of interleaving its files with ours; then clear the
    temporary files a killed run may have left (only the lock holder writes here)."""
    import fcntl
    import glob
    path = os.path.join(out, LOCK_NAME)
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise CLIError(f"{os.path.abspath(out)} is in use by a running scratchgen ({holder}); wait for it to "
                       f"finish, or choose another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()

    def release():
        os.remove(path)  # before unlocking: a waiting run then finds the folder free or makes its own lock
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()

    cleanup.callback(release)
    for stale in glob.glob(os.path.join(out, "*.tmp")) + glob.glob(os.path.join(out, ".*.tmp")):
        os.remove(stale)


def _data_root():
    return os.environ.get(DATA_ENV) or None


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def _read_config(run_dir):
    if not os.path.isdir(run_dir):
        raise CLIError(f"run directory {os.path.abspath(run_dir)} does not exist")
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise CLIError(f"{os.path.abspath(path)} not found: is {run_dir} a scratchgen run directory?")
    with open(path) as f:
        return json.load(f)


def _spec(name, config):
    from .specs import UnknownModelError, create
    try:
        return create(name, config)
    except UnknownModelError as e:
        raise CLIError(str(e)) from None


def _load_trained(args, run_dir, data=None, device=None, which="best"):
    """(spec, model, config, checkpoint path) for a finished or running run directory."""
    from .checkpoint import load_checkpoint
    config = _read_config(run_dir)
    _set_data_root(data or (config.get("data_root") if config.get("data_root") and
                            os.path.isdir(config["data_root"]) else None))
    if device:
        config["device"] = device
    _check_device(config.get("device"))
    # evaluate/sample score whole splits unless told otherwise: training's --limit-eval was for
    # the per-epoch validation, not for the final word on a model
    config["limit_eval"] = getattr(args, "limit_eval", None)
    changes = _parse_set(getattr(args, "set", None))
    if changes:
        from .specs.settings import SettingError, check_settings
        try:
            check_settings(config["model"], _spec(config["model"], {}), changes)
        except SettingError as e:
            raise CLIError(f"--set {e}") from None
        config.update(changes)
    spec = _spec(config["model"], {k: v for k, v in config.items() if k not in RUN_INFO})
    _limit_threads(args, spec)
    names = ["best.npz", "checkpoint.npz"] if which == "best" else ["checkpoint.npz"]
    path = next((os.path.join(run_dir, n) for n in names if os.path.exists(os.path.join(run_dir, n))), None)
    if path is None:
        raise CLIError(f"no checkpoint ({' or '.join(names)}) in {os.path.abspath(run_dir)}")
    model = spec.build()
    try:
        load_checkpoint(path, model=model, restore_rng=False)
    except Exception as e:   # a shape mismatch from a --set that reshaped the model: say which flag did it
        if not changes:
            raise
        raise CLIError(f"{e}\n--set {', '.join(sorted(changes))} changed the model, so its checkpoint does not "
                       f"fit: `evaluate --set` takes evaluation settings only (such as ais_betas, eval_k)") from None
    if (spec.config.get("device") or "cpu") != "cpu":
        model.to(spec.config["device"])
    model.eval()
    return spec, model, config, path


def _describe_data(spec):
    try:
        return spec.describe_data()
    except Exception as e:  # noqa: BLE001 - a description must never stop a command
        return f"{spec.dataset} ({type(e).__name__}: {e})"


# -- train ---------------------------------------------------------------------------------------------
RUN_INFO = ("model", "data_root", "data_source", "created", "command", "resumed", "scratchgen_version")
OVERRIDES = ("epochs", "batch_size", "lr", "seed", "device", "limit_train", "limit_eval", "patience")


def _parse_set(items):
    """--set key=value pairs; values parsed as JSON where possible (numbers, lists, true/false)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            out[k.replace("-", "_")] = v
    return out


def cmd_train(args):
    from . import plots
    from .data import DataLoader
    from .train import EarlyStopping, fit, resume, seed_everything

    t_start = time.perf_counter()
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k, None) is not None}
    overrides.update(_parse_set(args.set))

    if args.resume:
        if not args.out:
            raise CLIError("--resume needs --out RUN_DIR (the run to continue)")
        config = _read_config(args.out)
        if args.model != config["model"]:
            raise CLIError(f"{args.out} holds a run of model {config['model']!r}, not {args.model!r}")
        if not os.path.exists(os.path.join(args.out, "checkpoint.npz")):
            raise CLIError(f"no checkpoint.npz in {os.path.abspath(args.out)} to resume from")
        allowed = {"epochs", "device", "patience"}
        ignored = sorted(set(overrides) - allowed)
        if ignored:
            _say(f"note: --resume keeps the run's settings; ignoring {', '.join(ignored)}")
        planned_epochs = config.get("epochs")
        config.update({k: v for k, v in overrides.items() if k in allowed})
        if args.data is None and config.get("data_root") and os.path.isdir(config["data_root"]):
            args.data = config["data_root"]
        out = args.out
    else:
        config = dict(overrides)
        out = args.out or os.path.join("runs", f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
        if os.path.exists(os.path.join(out, "checkpoint.npz")):
            raise CLIError(f"{os.path.abspath(out)} already holds a run: pass --resume to continue it, "
                           f"or choose another --out")

    _set_data_root(args.data)
    spec = _spec(args.model, {k: v for k, v in config.items()
                              if k not in RUN_INFO})
    if not args.resume:
        from .specs.settings import SettingError, check_settings
        try:
            check_settings(args.model, _spec(args.model, {}), _parse_set(args.set))
        except SettingError as e:
            raise CLIError(f"--set {e}") from None
    cfg = spec.config
    _check_device(cfg.get("device"))
    _limit_threads(args, spec)
    data_source = _describe_data(spec)
    if args.resume and config.get("data_source") and not _same_source(config["data_source"], data_source):
        raise CLIError(f"this run trained on {config['data_source']!r}, but the data found now is "
                       f"{data_source!r}: resume with the same data (--data DIR or $SCRATCHGEN_DATA as "
                       f"before), or start a new run")
    _say(f"model: {args.model} ({spec.description})")
    _say(f"data: {data_source}")
    _say(f"output: {os.path.abspath(out)}")

    if not os.path.isdir(out):
        os.makedirs(out)
        # a run that fails before writing anything leaves no empty folder behind
        args.cleanup.callback(lambda: os.path.isdir(out) and not os.listdir(out) and os.rmdir(out))
    _lock_run_folder(out, args.cleanup)
    seed_everything(int(cfg["seed"]))
    model = spec.build()
    device = cfg.get("device") or "cpu"
    if device != "cpu":
        model.to(device)
    optimizer = spec.make_optimizer(model)
    scheduler = spec.make_scheduler(optimizer)
    ema = spec.make_ema(model)
    loader = DataLoader(spec.train_dataset(), batch_size=int(cfg["batch_size"]), shuffle=True,
                        drop_last=False, seed=int(cfg["seed"]))
    metric, mode = spec.monitor
    stopper = EarlyStopping(metric, mode, patience=cfg.get("patience", spec.patience) or None)  # 0: never stop

    start_epoch = 0
    if args.resume:
        start_epoch = resume(out, model, optimizer, scheduler, loader, stopper, ema=ema,
                             load_extra=lambda extra: spec.load_training_state(model, extra.get("spec") or {}))
        _say(f"resuming after epoch {start_epoch} of {cfg['epochs']}")
        if scheduler is not None and planned_epochs != cfg["epochs"]:
            _say(_replan_schedule(scheduler, planned_epochs, int(cfg["epochs"]), start_epoch))

    from . import __version__
    now, command = time.strftime("%Y-%m-%dT%H:%M:%S"), " ".join(["scratchgen"] + args.argv)
    saved = {"model": args.model, **cfg, "data_root": _data_root(), "data_source": data_source,
             "created": config.get("created", now) if args.resume else now,
             "command": config.get("command", command) if args.resume else command,
             "scratchgen_version": __version__}
    if args.resume:
        saved["resumed"] = config.get("resumed", []) + [f"{now}: {command}"]
    _write_json(os.path.join(out, "config.json"), saved)

    result = fit(model, optimizer, loader, epochs=int(cfg["epochs"]), training_step=spec.training_step,
                 valid_fn=lambda m: spec.evaluate(m, "valid"),
                 metrics_path=os.path.join(out, "metrics.jsonl"), early_stopping=stopper,
                 checkpoint_dir=out, start_epoch=start_epoch, scheduler=scheduler, device=device,
                 progress=not args.no_progress, log=_say, ema=ema,
                 extra_state=lambda: {"spec": spec.training_state(model)})
    train_time = time.perf_counter() - t_start

    # The model now holds the best epoch's weights: report the test split once, in eval mode
    # (dropout off, batch norm on its running statistics) and without building a graph.
    from .grad_mode import no_grad
    model.eval()
    with no_grad():
        test_metrics = spec.evaluate(model, "test")
    results = {"model": args.model, "best_epoch": stopper.best_epoch, "monitor": metric,
               f"best_{metric}": stopper.best, "epochs_run": result.last_epoch,
               "stopped_early": result.stopped_early, **test_metrics,
               "train_wall_s": round(train_time, 2), "data_source": data_source}
    spec.visualize(model, out)
    plots.curves(os.path.join(out, "metrics.jsonl"), os.path.join(out, "curves.png"),
                 title=f"{args.model}: training curves")
    results["total_wall_s"] = round(time.perf_counter() - t_start, 2)
    _write_json(os.path.join(out, "results.json"), results)

    shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in test_metrics.items())
    best = "none" if stopper.best is None else f"{stopper.best:.4f}"
    _say(f"best epoch {stopper.best_epoch} ({metric} {best}); test: {shown}")
    written = sorted(f for f in os.listdir(out) if not f.startswith("."))
    _say(f"wrote {out}/: {' '.join(written)}  ({results['total_wall_s']:.1f}s)")
    return 0


def _replan_schedule(scheduler, planned, epochs, done):
    """A resume that changes --epochs: a schedule planned over the run's length (cosine) is
    stretched to the new length, continuing from the epoch reached; others go on unchanged."""
    if hasattr(scheduler, "T_max") and scheduler.T_max == planned:
        scheduler.T_max = epochs
        for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_lr()):
            group["lr"] = lr
        scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]
        return (f"note: the cosine learning-rate schedule planned for {planned} epochs is stretched to "
                f"{epochs}: epoch {done + 1} continues at {scheduler.get_lr()[0]:.3g}")
    return f"note: the learning-rate schedule ({type(scheduler).__name__}) goes on unchanged past epoch {planned}"


# -- reproduce -----------------------------------------------------------------------------------------
def _recipe(name):
    from . import recipes
    try:
        return recipes.get(name)
    except KeyError as e:
        raise CLIError(e.args[0]) from None


def _minutes(m):
    return "-" if m is None else f"{m:g} min"


def cmd_reproduce(args):
    from . import recipes
    if args.list or not args.recipe:
        rows = [recipes.get(n) for n in recipes.available()]
        head = ("recipe", "model", "metric", "ours", "paper", "CPU (2 cores)", "GPU")
        table = [head] + [(r.name, r.model, r.metric, f"{r.expected:g} +- {r.tolerance:g}",
                           "-" if r.paper is None else f"{r.paper:g}", _minutes(r.cpu_minutes), _minutes(r.gpu_minutes))
                          for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for row in table:
            _say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        _say("`scratchgen reproduce NAME` runs one; --smoke runs it at a tiny budget (a check, not the number)")
        return 0
    recipe = _recipe(args.recipe)
    config = recipe.config(smoke=args.smoke)
    out = args.out or os.path.join("runs", f"{recipe.name}{'-smoke' if args.smoke else ''}-{time.strftime('%Y%m%d-%H%M%S')}")
    flags = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "seed": "--seed",
             "limit_train": "--limit-train", "limit_eval": "--limit-eval", "patience": "--patience"}
    argv = ["train", recipe.model, "--out", out]
    for k, v in config.items():
        argv += [flags[k], str(v)] if k in flags else ["--set", f"{k}={json.dumps(v)}"]
    for name in ("data", "device", "threads"):
        if getattr(args, name, None) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    if args.no_progress:
        argv.append("--no-progress")
    _say(f"recipe {recipe.name}: {recipe.budget}{' (smoke budget: ' + json.dumps(recipe.smoke) + ')' if args.smoke else ''}")
    _say(f"expected: {recipe.metric} {recipe.expected:g} +- {recipe.tolerance:g} {recipe.unit} on {recipe.data}; "
         f"about {_minutes(recipe.cpu_minutes)} on a 2-core CPU")
    train_args = build_parser().parse_args(argv)
    train_args.argv, train_args.cleanup = ["reproduce", recipe.name] + (["--smoke"] if args.smoke else []), args.cleanup
    cmd_train(train_args)
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    if recipe.metric not in results:
        raise CLIError(f"the run wrote no {recipe.metric!r} in {out}/results.json (it has {sorted(results)})")
    value = float(results[recipe.metric])
    paper = "" if recipe.paper is None else f"; paper {recipe.paper:g} ({recipe.paper_source})"
    _say(f"{recipe.name}: ours {recipe.metric} {value:.4g} {recipe.unit}, expected {recipe.expected:g} +- "
         f"{recipe.tolerance:g}{paper}")
    if args.smoke:
        _say("smoke budget: the number is not compared")
        return 0
    if not recipe.within_tolerance(value):
        raise CLIError(f"{recipe.name} did not reproduce: {value:.4g} is outside {recipe.expected:g} +- "
                       f"{recipe.tolerance:g} (data: {results.get('data_source')})")
    _say(f"{recipe.name} reproduced")
    return 0


# -- sample / evaluate ------------------------------------------------------------------------------------
def cmd_sample(args):
    spec, model, config, ckpt = _load_trained(args, args.run_dir, args.data, args.device)
    _say(f"model: {config['model']} from {ckpt}")
    _say(f"data: {_describe_data(spec)}")
    if args.out:
        path = spec.sample(model, args.n or spec.n_samples, args.out)
    else:
        path = spec.visualize(model, args.run_dir, args.n)
    _say(f"wrote {path}")
    return 0


def cmd_evaluate(args):
    spec, model, config, ckpt = _load_trained(args, args.run_dir, args.data, args.device, args.checkpoint)
    _say(f"model: {config['model']} from {ckpt}")
    _say(f"data: {_describe_data(spec)}")
    t0 = time.perf_counter()
    if args.limit_eval:
        _say(f"scoring the first {args.limit_eval} examples of the {args.split} split")
    from .grad_mode import no_grad
    with no_grad():
        metrics = spec.evaluate(model, args.split)
    for k, v in metrics.items():
        _say(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")
    _say(f"({time.perf_counter() - t0:.1f}s)")
    if args.json:
        _say(json.dumps(metrics))
    return 0


# -- models / data ------------------------------------------------------------------------------------------
def cmd_models(args):
    from .specs import available, create, import_errors
    if args.name:
        from .specs.settings import describe_settings
        spec = _spec(args.name, {})
        _say(f"{args.name}: {spec.description}  [data: {spec.dataset}]")
        _say(f"settings (scratchgen train {args.name} --set KEY=VALUE):")
        rows = describe_settings(spec)
        width = max(len(r[0]) for r in rows)
        for key, kind, default, meaning in rows:
            _say(f"  {key:{width}s}  {kind:10s} {default:14s} {meaning}")
        return 0
    for name in available():
        spec = create(name)
        keys = ("epochs", "batch_size", "lr")
        _say(f"{name:12s} {spec.description}  [data: {spec.dataset}; "
             + ", ".join(f"{k}={spec.config[k]}" for k in keys if k in spec.config) + "]")
    for name, err in import_errors().items():
        _say(f"(module {name} failed to import: {err})")
    _say("`scratchgen models NAME` lists a model's settings")
    return 0


def cmd_data(args):
    from . import data
    _set_data_root(args.data)
    root = data.data_root()
    origin = "--data" if args.data else f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "default"
    _say(f"data root: {root} ({origin})")
    if args.data_command == "list":
        for name, where, bundled in data.list_datasets():
            extra = "; a bundled subset is used when it is missing" if bundled and where == "missing" else ""
            _say(f"  {name:16s} {where}{extra}")
        toy = getattr(data, "TOY_DATASETS", None)
        if toy:
            _say(f"  {'toy 2-D sets':16s} generated on the fly: {', '.join(sorted(toy))}")
        _say(f"MNIST in use: {data.describe_mnist_source()}")
        return 0
    if args.data_command == "download":
        try:
            result = data.download(args.name)
        except Exception as e:  # noqa: BLE001 - report the reason, not a traceback
            raise CLIError(f"download of {args.name!r} failed: {type(e).__name__}: {e}") from None
        _say(f"{args.name}: {result}")
        return 0
    raise CLIError("usage: scratchgen data {list,download NAME}")


# -- argument parsing ---------------------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(prog="scratchgen", description="Train, sample and evaluate scratchgen models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train a registered model", description="Train a registered model. "
                       "Run `scratchgen models` for the names and their default hyperparameters.")
    t.add_argument("model", help="model name (see `scratchgen models`)")
    t.add_argument("--data", metavar="DIR", help=f"data root (overrides ${DATA_ENV})")
    t.add_argument("--epochs", type=_count(1))
    t.add_argument("--batch-size", type=_count(1), dest="batch_size")
    t.add_argument("--lr", type=_positive_float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=["cpu", "cuda"])
    t.add_argument("--threads", type=_count(1), metavar="N",
                   help="CPU threads for BLAS and kernels (default: $SCRATCHGEN_THREADS, else the "
                        "physical cores)")
    t.add_argument("--out", metavar="DIR", help="run folder (default runs/<model>-<timestamp>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--patience", type=_count(0), help="early-stopping patience in epochs (0: never stop early)")
    t.add_argument("--limit-train", type=_count(1), dest="limit_train", metavar="N",
                   help="train on the first N training examples only")
    t.add_argument("--limit-eval", type=_count(1), dest="limit_eval", metavar="N",
                   help="evaluate on the first N examples of each split only")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other model hyperparameter, e.g. --set dropout=0.1 (repeatable)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples.png from a trained run (reconstructions for an autoencoder)")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--n", type=_count(1), default=None, help="number of samples")
    s.add_argument("--out", metavar="PATH", help="PNG path (default RUN_DIR/samples.png)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a sampling setting that differs from the run's, e.g. --set temperature=0.5 (repeatable)")
    s.add_argument("--data", metavar="DIR", help=f"data root (overrides ${DATA_ENV})")
    s.add_argument("--device", choices=["cpu", "cuda"])
    s.add_argument("--threads", type=_count(1), metavar="N",
                   help="CPU threads for BLAS and kernels (default: $SCRATCHGEN_THREADS, else the "
                        "physical cores)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="evaluate a trained run on a data split")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"], help="data split (default test)")
    e.add_argument("--checkpoint", choices=["best", "last"], default="best")
    e.add_argument("--data", metavar="DIR", help=f"data root (overrides ${DATA_ENV})")
    e.add_argument("--device", choices=["cpu", "cuda"])
    e.add_argument("--threads", type=_count(1), metavar="N",
                   help="CPU threads for BLAS and kernels (default: $SCRATCHGEN_THREADS, else the "
                        "physical cores)")
    e.add_argument("--limit-eval", type=_count(1), dest="limit_eval", metavar="N",
                   help="score the first N examples of the split only (default: all of them)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an evaluation setting that differs from the run's, e.g. --set ais_betas=14500 or "
                        "--set eval_k=5000 (repeatable; a setting that changes the model's shape does not fit "
                        "its checkpoint)")
    e.add_argument("--json", action="store_true", help="also print the metrics as one JSON line")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("reproduce", help="train a recipe to its headline number and compare",
                       description="Run a recipe (scratchgen/recipes/): train its model with its settings and budget, "
                                   "then print our number against the expected one and the paper's.")
    r.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    r.add_argument("--list", action="store_true", help="list the recipes with their numbers and expected times")
    r.add_argument("--smoke", action="store_true", help="a tiny budget: checks that the recipe runs end to end")
    r.add_argument("--out", metavar="DIR", help="run folder (default runs/<recipe>-<timestamp>)")
    r.add_argument("--data", metavar="DIR", help=f"data root (overrides ${DATA_ENV})")
    r.add_argument("--device", choices=["cpu", "cuda"])
    r.add_argument("--threads", type=_count(1), metavar="N", help="CPU threads (default: the physical cores)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_reproduce)

    m = sub.add_parser("models", help="list the registered models, or one model's settings")
    m.add_argument("name", nargs="?", help="a model name: list its --set keys, types, defaults and meaning")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("data", help="list or download data sets")
    dsub = d.add_subparsers(dest="data_command", metavar="{list,download}")
    dsub.required = True
    dl = dsub.add_parser("list", help="data sets and where they are")
    dl.add_argument("--data", metavar="DIR", help=f"data root (overrides ${DATA_ENV})")
    dd = dsub.add_parser("download", help="download a data set into the data root")
    dd.add_argument("name")
    dd.add_argument("--data", metavar="DIR", help=f"data root (overrides ${DATA_ENV})")
    d.set_defaults(func=cmd_data)
    from .ood.cli import add_parser as add_ood_parser  # `scratchgen ood`: the OOD study (scratchgen/ood/)
    add_ood_parser(sub)
    return p


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 1 error, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    saved_env = os.environ.get(DATA_ENV)
    try:
        with contextlib.ExitStack() as args.cleanup:  # commands register what to undo at the end
            return args.func(args) or 0
    except CLIError as e:
        print(f"scratchgen: error: {e}", file=sys.stderr, flush=True)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError, OSError, FloatingPointError) as e:
        if os.environ.get("SCRATCHGEN_DEBUG"):
            raise
        # The library's errors name the culprit and the fix; the traceback adds nothing for a user.
        print(f"scratchgen: error: {e}", file=sys.stderr, flush=True)
        print("(set SCRATCHGEN_DEBUG=1 for the traceback)", file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:  # e.g. `scratchgen data list | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("scratchgen: interrupted (the last finished epoch is in checkpoint.npz; --resume continues)",
              file=sys.stderr)
        return 130
    finally:
        # --data is scoped to this call (matters when main() is called in-process, e.g. by tests)
        if saved_env is None:
            os.environ.pop(DATA_ENV, None)
        else:
            os.environ[DATA_ENV] = saved_env


if __name__ == "__main__":
    sys.exit(main())
