#!/usr/bin/env python
"""Where a training step's time goes: forward (the loss), backward and the optimizer step, timed
apart, scratchgen against its PyTorch twin, each in its own process, at default threads.

    SCRATCHGEN_DATA=/work/shared/data python bench/step_phases.py --models nice --runs 3

For the models whose step is one gradient step (made, vae, nice): the spec's model, optimizer and
batches as in bench/step_time.py, and its twin's from bench/twins/cli.py. scratchgen's phases are
the loss, `loss.backward()` and `opt.step()`; `scratchgen.train.gradient_step` also checks every
gradient for NaN and infinity before the step, timed here as its own column ("check"). Prints the
median of the per-process medians in ms.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cli_epoch import THREAD_VARS, machine  # noqa: E402
from step_time import N_BATCHES  # noqa: E402

MODELS = ["made", "vae", "nice"]
PHASES = ["forward", "backward", "check", "optimizer"]


def _setup_sg(model_name):
    from scratchgen import threads
    from scratchgen.data import DataLoader
    from scratchgen.specs import create
    from scratchgen.train import _first_non_finite_grad, seed_everything
    bs = int(create(model_name, {}).config["batch_size"])
    spec = create(model_name, {"limit_train": N_BATCHES * bs})
    threads.set_threads(None)
    seed_everything(0)
    model = spec.build()
    opt = spec.make_optimizer(model)
    model.train()
    batches = list(DataLoader(spec.train_dataset(), batch_size=bs, shuffle=True, seed=0))
    return batches, opt, lambda b: spec.loss(model, b), lambda: _first_non_finite_grad(opt)


def _setup_torch(model_name):
    import torch
    sys.path.insert(0, os.path.join(HERE, "twins"))
    from cli import TWINS
    from runner import batches as epoch_batches
    bs = int(TWINS[model_name]({}).config["batch_size"])
    twin = TWINS[model_name]({"limit_train": N_BATCHES * bs})
    torch.manual_seed(0)
    model = twin.build()
    opt = twin.make_optimizer(model)
    model.train()
    batches = list(epoch_batches(twin.train_dataset(), bs, 0, 0))

    def loss(b):
        out = twin.loss(model, b)
        return out["loss"] if isinstance(out, dict) else out
    return batches, opt, loss, lambda: None


def worker(framework, model_name, warmup, steps):
    batches, opt, loss_fn, check = (_setup_sg if framework == "sg" else _setup_torch)(model_name)
    times = {k: [] for k in PHASES}
    for i in range(warmup + steps):
        opt.zero_grad()
        t0 = time.perf_counter()
        loss = loss_fn(batches[i % len(batches)])
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        check()
        t3 = time.perf_counter()
        opt.step()
        float(loss.item())
        t4 = time.perf_counter()
        if i >= warmup:
            for k, a, b in zip(PHASES, (t0, t1, t2, t3), (t1, t2, t3, t4)):
                times[k].append((b - a) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--worker", choices=["sg", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.models[0], args.warmup, args.steps)))
        return 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(THREAD_VARS)}
    print(f"{machine()}, default threads; ms per step, median of {args.runs} processes x {args.steps} steps\n")
    print("| model | framework | " + " | ".join(PHASES) + " | total |")
    print("| --- | --- |" + " ---: |" * (len(PHASES) + 1))
    for model in args.models:
        runs = {"sg": [], "torch": []}
        for i in range(args.runs):
            for fw in (("sg", "torch") if i % 2 == 0 else ("torch", "sg")):
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", fw, "--models", model,
                       "--warmup", str(args.warmup), "--steps", str(args.steps)]
                out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
                runs[fw].append(json.loads(out.strip().splitlines()[-1]))
        for fw in ("sg", "torch"):
            med = {k: statistics.median(r[k] for r in runs[fw]) for k in PHASES}
            print(f"| {model} | {fw} | " + " | ".join(f"{med[k]:.1f}" for k in PHASES)
                  + f" | {sum(med.values()):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
