"""What the standalone twin scripts (bench/torch_realnvp.py, torch_glow.py, torch_maf.py) share around
their models: scratchgen's weights in and out, the check's comparisons, the train subcommand.

    from_scratchgen(torch_model, state)        a scratchgen state_dict copied into a twin with the
                                               same module tree (same keys and shapes)
    scratchgen_initial_state(model, cfg, seed) the state_dict `scratchgen train <model>` starts from,
                                               built in a subprocess
    rel_diff(a, b), max_abs(a, b)              the check's differences, in float64
    optimizer_steps(sg, sgm, tm, ...)          the check's optimizer steps, both models side by side
    run_checks(check_one, batches, args)       the check subcommand: each dtype, --json, the verdict
    add_train_args(parser, ...)                the train subcommand's flags
    train(twin, args)                          the train subcommand: scratchgen's initial weights
                                               (unless --torch-init), runner.run, results.json

Nothing here imports scratchgen: the twin's process must never load its engine or thread policy.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- weights from scratchgen ------------------------------------------------------------------------
def from_scratchgen(torch_model, state):
    """Copy a scratchgen model's state_dict (or the model itself, or a dict of arrays) into its twin:
    the same keys and shapes, or KeyError / ValueError; values, buffers included (actnorm's
    `initialized`, masks, batch norm's running statistics), cast to the twin's dtypes."""
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    sd = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in state.items()}
    own = torch_model.state_dict()
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or extra:
        raise KeyError(f"state_dict keys differ: missing in scratchgen {missing}, not in torch {extra}")
    new = {}
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise ValueError(f"{k}: scratchgen shape {sd[k].shape} vs torch {tuple(v.shape)}")
        new[k] = torch.as_tensor(np.array(sd[k]), dtype=v.dtype, device=v.device)
    torch_model.load_state_dict(new, strict=True)
    return torch_model


def scratchgen_initial_state(model, cfg, seed):
    """The state_dict `scratchgen train <model>` starts from with the spec settings `cfg`
    (seed_everything(seed), then the spec's build(), as cmd_train), computed in a subprocess so
    this process never imports scratchgen."""
    code = ("import json, sys, numpy as np\n"
            "from scratchgen.specs import create\n"
            "from scratchgen.train import seed_everything\n"
            "model_name, cfg, seed, path = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]\n"
            "spec = create(model_name, dict(cfg, seed=seed))\n"
            "seed_everything(seed)\n"
            "model = spec.build()\n"
            "np.savez(path, **{k: np.asarray(v.numpy() if hasattr(v, 'numpy') else v)"
            " for k, v in model.state_dict().items()})\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "init.npz")
        paths = [REPO] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        subprocess.run([sys.executable, "-c", code, model, json.dumps(cfg), str(seed), path], check=True, env=env)
        with np.load(path) as f:
            return {k: f[k].copy() for k in f.files}


# -- equivalence check ------------------------------------------------------------------------------
def to_numpy(v):
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return v.numpy() if hasattr(v, "numpy") else v


def rel_diff(a, b):
    """||a - b|| / ||b|| in float64."""
    a, b = (np.asarray(to_numpy(v), np.float64) for v in (a, b))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def max_abs(a, b):
    a, b = (np.asarray(to_numpy(v), np.float64) for v in (a, b))
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def optimizer_steps(sg, sgm, tm, sg_opt, t_opt, batches, np_dtype, sg_step=None, t_schedule=None):
    """One step of each optimizer on each batch (the mean NLL, scratchgen's model `sgm` through the
    scratchgen module `sg`, the twin `tm`), side by side; yields the losses' relative difference
    after each step, before the next. A learning-rate schedule applied per step: `sg_step(sgm, x,
    sg_opt)` -> the loss as a float, scratchgen's own step (a spec's training_step, its loss the
    mean NLL of x), and `t_schedule(t_opt)`, called before each of the twin's steps."""
    for xb in batches:
        xb = xb.astype(np_dtype)
        if sg_step is not None:
            ls = sg_step(sgm, sg.tensor(xb), sg_opt)
        else:
            sg_opt.zero_grad()
            ls = -sgm.log_prob(sg.tensor(xb)).mean()
            ls.backward()
            sg_opt.step()
            ls = float(ls.item())
        if t_schedule is not None:
            t_schedule(t_opt)
        t_opt.zero_grad()
        lt = -tm.log_prob(torch.from_numpy(xb)).mean()
        lt.backward()
        t_opt.step()
        yield abs(ls - float(lt.item())) / abs(float(lt.item()))


def run_checks(check_one, batches, args):
    """check_one(dtype_name, batches, args) for float64 and float32 (or args.dtype alone), the
    numbers to args.json, EQUIVALENT or MISMATCH; the exit status (1 if any dtype failed)."""
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    t0 = time.perf_counter()
    out = {d: check_one(d, batches, args) for d in dtypes}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    ok = not any(r["failed"] for r in out.values())
    print(f"{'EQUIVALENT' if ok else 'MISMATCH'} ({time.perf_counter() - t0:.1f}s)")
    return 0 if ok else 1


# -- training: `scratchgen train <model>` with torch ------------------------------------------------
def add_train_args(t, model_args=(), optimizer_args=()):
    """The train subcommand's flags: `optimizer_args` after --lr and `model_args` after
    --limit-eval, each (flag, add_argument keywords); the twin's own flags last."""
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int, dest="batch_size")
    t.add_argument("--lr", type=float)
    for flag, kw in optimizer_args:
        t.add_argument(flag, **kw)
    t.add_argument("--seed", type=int)
    t.add_argument("--patience", type=int)
    t.add_argument("--limit-train", type=int, dest="limit_train")
    t.add_argument("--limit-eval", type=int, dest="limit_eval")
    for flag, kw in model_args:
        t.add_argument(flag, **kw)
    t.add_argument("--dtype", choices=["float32", "float64"],
                   help="the twin's dtype (default float32, as scratchgen's; float64: a reference with less rounding)")
    t.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    t.add_argument("--torch-init", action="store_true", help="torch's own initial draw instead of scratchgen's")
    t.add_argument("--init-from-scratchgen", dest="torch_init", action="store_false",
                   help="scratchgen's initial weights for the same seed (the default)")
    t.add_argument("--out", required=True)


def train(twin, args, init_keys, log=print):
    """runner.run for the twin, from scratchgen's initial weights for its seed (the config entries
    `init_keys` passed to the spec) unless args.torch_init; results.json with the init, torch's
    version and the threads."""
    from runner import run, write_json
    c = twin.config
    if not args.torch_init:   # before run(): not counted in the twin's wall times (scratchgen's import)
        t0 = time.perf_counter()
        twin.init_state = scratchgen_initial_state(twin.name, {k: c[k] for k in init_keys}, int(c["seed"]))
        log(f"initial weights: scratchgen's (seed {c['seed']}), built in a subprocess in "
            f"{time.perf_counter() - t0:.1f}s")
    twin.config["init"] = "torch" if args.torch_init else "scratchgen"
    results = run(twin, args, log=log)
    results.update({"init": twin.config["init"], "torch": torch.__version__, "threads": torch.get_num_threads()})
    write_json(os.path.join(args.out, "results.json"), results)
    assert "scratchgen" not in sys.modules, "the twin must not load scratchgen's engine or thread policy"
    return results
