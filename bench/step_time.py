#!/usr/bin/env python
"""Time of one training step of `scratchgen train MODEL` against its PyTorch twin, each framework
in its own process, at default threads (a 1-thread column with --one-thread).

    SCRATCHGEN_DATA=/work/shared/data python bench/step_time.py                    # all 8 models
    SCRATCHGEN_DATA=/work/shared/data python bench/step_time.py --models made dcgan --runs 3 --one-thread

A step is what `fit` does per loader batch at the CLI's default settings: zero_grad, the spec's
loss on the batch (for the GAN family that includes the discriminator's steps), backward, the
optimizer step and the loss read back as a float. scratchgen builds the model, optimizer and data
through the registry (scratchgen.models.create(MODEL)) and applies the CLI's thread policy; torch
uses bench/twins/cli.py's twin of the same model. Each worker process loads the data, draws 8
shuffled batches of the default batch size, runs --warmup steps, then --steps timed steps
(cycling through the batches) and reports the median step in ms; the parent runs --runs worker
pairs per model, alternating which framework goes first, and reports the median of the medians.
Prints a markdown table: model, batch, sg ms, torch ms, ratio = sg / torch, machine, date.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cli_epoch import MODELS as CLI_MODELS, ONE_THREAD, OWN_TWIN, THREAD_VARS, machine  # noqa: E402

# the models whose twin is in bench/twins/cli.py (a model with its own twin script has no step worker)
MODELS = [m for m in CLI_MODELS if m not in OWN_TWIN]

N_BATCHES = 8


def _median_ms(step, batches, warmup, steps):
    for i in range(warmup):
        step(batches[i % len(batches)])
    times = []
    for i in range(steps):
        t = time.perf_counter()
        step(batches[i % len(batches)])
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def worker_sg(model_name, warmup, steps, threads):
    from scratchgen import threads as sg_threads
    from scratchgen.data import DataLoader
    from scratchgen.specs import create
    from scratchgen.train import seed_everything
    spec = create(model_name, {})
    bs = int(spec.config["batch_size"])
    spec = create(model_name, {"limit_train": N_BATCHES * bs})
    sg_threads.set_threads(threads)       # None: the CLI's default policy
    seed_everything(0)
    model = spec.build()
    opt = spec.make_optimizer(model)
    batches = list(DataLoader(spec.train_dataset(), batch_size=bs, shuffle=True, seed=0))
    model.train()

    def step(batch):
        spec.training_step(model, batch, opt)   # fit's step: the GAN family's includes D's steps

    return bs, _median_ms(step, batches, warmup, steps)


def worker_torch(model_name, warmup, steps, threads):
    import torch
    sys.path.insert(0, os.path.join(HERE, "twins"))
    from cli import TWINS
    from runner import batches as epoch_batches
    if threads:
        torch.set_num_threads(threads)
    twin = TWINS[model_name]({})
    bs = int(twin.config["batch_size"])
    twin = TWINS[model_name]({"limit_train": N_BATCHES * bs})
    torch.manual_seed(0)
    model = twin.build()
    opt = twin.make_optimizer(model)
    batches = list(epoch_batches(twin.train_dataset(), bs, 0, 0))
    model.train()

    def step(batch):
        opt.zero_grad()
        out = twin.loss(model, batch)
        loss = out["loss"] if isinstance(out, dict) else out
        loss.backward()
        opt.step()
        float(loss.item())

    ms = _median_ms(step, batches, warmup, steps)
    assert "scratchgen" not in sys.modules, "the torch worker must not load scratchgen's engine or thread policy"
    return bs, ms


def run_worker(framework, model, args, one_thread, log):
    env = {k: v for k, v in os.environ.items() if not k.startswith(THREAD_VARS)}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--models", model,
           "--warmup", str(args.warmup), "--steps", str(args.steps)]
    if one_thread:
        env.update(ONE_THREAD)
        cmd += ["--threads", "1"]
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        log(f"  FAILED: {' '.join(cmd)}\n{r.stderr[-1500:]}")
        return None, None
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out["batch_size"], out["ms"]


def measure(model, args, one_thread, log):
    ms, bs = {"sg": [], "torch": []}, None
    for i in range(args.runs):
        for fw in (("sg", "torch") if i % 2 == 0 else ("torch", "sg")):
            b, t = run_worker(fw, model, args, one_thread, log)
            if t is None:
                return ms, bs
            bs = b
            ms[fw].append(t)
        log(f"  {model} {'1 thread' if one_thread else 'default threads'} run {i + 1}: "
            f"sg {ms['sg'][-1]:.2f} ms  torch {ms['torch'][-1]:.2f} ms")
    return ms, bs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    p.add_argument("--runs", type=int, default=3, help="worker pairs per model (default 3)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--one-thread", action="store_true", help="add a 1-thread column")
    p.add_argument("--worker", choices=["sg", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        fn = worker_sg if args.worker == "sg" else worker_torch
        bs, ms = fn(args.models[0], args.warmup, args.steps, args.threads)
        print(json.dumps({"batch_size": bs, "ms": ms}))
        return 0
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    where = machine()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = "| model | batch | sg ms | torch ms | ratio |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    if args.one_thread:
        head += " sg ms (1 thread) | torch ms (1 thread) | ratio (1 thread) |"
        rule += " ---: | ---: | ---: |"
    lines = [head + " machine | date |", rule + " --- | --- |"]
    ok = True

    def cells(ms):
        if not ms["sg"] or not ms["torch"]:
            return "failed | failed | - |"
        a, b = statistics.median(ms["sg"]), statistics.median(ms["torch"])
        return f"{a:.2f} | {b:.2f} | **{a / b:.2f}** |"

    for model in args.models:
        ms, bs = measure(model, args, False, log)
        ok &= bool(ms["sg"] and ms["torch"])
        line = f"| {model} | {bs} | {cells(ms)}"
        if args.one_thread:
            line += f" {cells(measure(model, args, True, log)[0])}"
        lines.append(line + f" {where} | {date} |")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
