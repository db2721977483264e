#!/usr/bin/env python
"""Whole-process time of one CLI epoch, as a user runs it: `scratchgen train MODEL --epochs 1`
against its PyTorch twin `python bench/twins/cli.py MODEL --epochs 1` (bench/twins/cli.py says
what each twin mirrors), each in its own process, alternating, at default threads.

    SCRATCHGEN_DATA=/work/shared/data python bench/cli_epoch.py                       # all 13 models
    SCRATCHGEN_DATA=/work/shared/data python bench/cli_epoch.py --runs 5 --one-thread \\
        --write bench/RESULTS.md                                                      # + 1-thread column
    python bench/cli_epoch.py --models made gan --runs 1 --limit-train 500 --limit-eval 500   # smoke test

What is timed: the wall time of the whole command (interpreter start, imports, data loading, the
epoch, validation, test evaluation, samples and pictures, metrics.jsonl, checkpoints), from
subprocess start to exit; every run writes a fresh output folder. Each model first runs both
commands once untimed (Numba's kernel cache, the page cache), then --runs pairs, the order
alternating (sg, torch), (torch, sg), ... (the warm-up runs on 256 training and evaluation
examples: it only has to compile and cache, not to be timed). Default threads: OMP_*, OPENBLAS_*, MKL_*,
NUMBA_NUM_THREADS and SCRATCHGEN_THREADS are removed from the environment (as
/work/shared/tools/abtime does). --one-thread adds a column with both at one thread (those
variables set to 1, plus --threads 1 on both command lines).

Prints a markdown table (model, command, sg s, torch s, ratio = sg / torch, machine, date);
--write FILE puts it into FILE between the markers <!-- cli_epoch --> and <!-- /cli_epoch -->
(appended with the markers if they are absent; rows of other models already there are kept, so
the slow models can be measured in a separate call), --json FILE keeps every run's time.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MODELS = ["made", "vae", "nice", "gan", "wgan_gp", "dcgan", "pixelcnn", "gated_pixelcnn", "realnvp", "glow", "maf",
          "rbm", "nade"]
# Twins that live in their own file (a `train` mode mirroring cmd_train) rather than in twins/cli.py.
OWN_TWIN = {"realnvp": ["torch_realnvp.py", "train"], "glow": ["torch_glow.py", "train"],
            "maf": ["torch_maf.py", "train"]}
THREAD_VARS = ("OMP_", "OPENBLAS_", "MKL_", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "SCRATCHGEN_THREADS")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1", "SCRATCHGEN_THREADS": "1"}
WARMUP_ROWS = 256
MARK, END = "<!-- cli_epoch -->", "<!-- /cli_epoch -->"


def machine():
    """'CPU model, N cores (M logical)' of this machine."""
    name = platform.processor() or platform.machine()
    cores = set()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), name)
        phys = core = None
        for line in info.splitlines() + [""]:
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                core = line.split(":")[1].strip()
            elif not line.strip() and core is not None:
                cores.add((phys, core))
                phys = core = None
    except OSError:
        pass
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {len(cores) or logical} cores ({logical} logical)"


def commands(model, out, args, one_thread):
    extra = ["--epochs", str(args.epochs)]
    for flag, v in (("--limit-train", args.limit_train), ("--limit-eval", args.limit_eval)):
        if v:
            extra += [flag, str(v)]
    if one_thread:
        extra += ["--threads", "1"]
    sg = ["scratchgen", "train", model, *extra, "--no-progress", "--out", os.path.join(out, "sg")]
    twin = [os.path.join(HERE, OWN_TWIN[model][0]), *OWN_TWIN[model][1:]] if model in OWN_TWIN else \
        [os.path.join(HERE, "twins", "cli.py"), model]
    torch = [sys.executable, *twin, *extra, "--out", os.path.join(out, "torch")]
    return sg, torch


def wall(cmd, env, log):
    out = cmd[cmd.index("--out") + 1]
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        log(f"  FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-1500:]}")
        return None
    return dt


def measure(model, args, one_thread, tmp, log):
    env = {k: v for k, v in os.environ.items() if not k.startswith(THREAD_VARS)}
    if one_thread:
        env.update(ONE_THREAD)
    sg, torch = commands(model, tmp, args, one_thread)
    times = {"sg": [], "torch": []}
    # The warm-up run: both commands on WARMUP_ROWS examples (the data files are still read whole).
    small = argparse.Namespace(**{**vars(args), "limit_train": min(args.limit_train or WARMUP_ROWS, WARMUP_ROWS),
                                  "limit_eval": min(args.limit_eval or WARMUP_ROWS, WARMUP_ROWS)})
    warm = commands(model, tmp, small, one_thread)
    if not args.cold and (wall(warm[0], env, log) is None or wall(warm[1], env, log) is None):
        return times, sg
    for i in range(args.runs):
        order = [("sg", sg), ("torch", torch)] if i % 2 == 0 else [("torch", torch), ("sg", sg)]
        for name, cmd in order:
            dt = wall(cmd, env, log)
            if dt is None:
                return times, sg
            times[name].append(dt)
        log(f"  {model} {'1 thread' if one_thread else 'default threads'} run {i + 1}: "
            f"sg {times['sg'][-1]:.2f}s  torch {times['torch'][-1]:.2f}s")
    return times, sg


def fmt(times):
    return f"{statistics.median(times):.1f}" if times else "failed"


def ratio(a, b):
    return f"**{statistics.median(a) / statistics.median(b):.2f}**" if a and b else "-"


def table(rows, one_thread, where, date):
    head = "| model | command | sg s | torch s | ratio |"
    rule = "| --- | --- | ---: | ---: | ---: |"
    if one_thread:
        head += " sg s (1 thread) | torch s (1 thread) | ratio (1 thread) |"
        rule += " ---: | ---: | ---: |"
    head += " machine | date |"
    rule += " --- | --- |"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r['model']} | `{r['command']}` | {fmt(r['default']['sg'])} | {fmt(r['default']['torch'])} | "
                f"{ratio(r['default']['sg'], r['default']['torch'])} |")
        if one_thread:
            o = r["one"]
            line += f" {fmt(o['sg'])} | {fmt(o['torch'])} | {ratio(o['sg'], o['torch'])} |"
        lines.append(line + f" {where} | {date} |")
    return "\n".join(lines)


def write_section(path, text):
    """Put the table between the markers; rows of models this run did not measure are kept
    when the old table has the same columns (so the models can be measured in several calls)."""
    old = open(path).read() if os.path.exists(path) else ""
    if MARK in old and END in old:
        prev = old[old.index(MARK) + len(MARK):old.index(END)].strip().splitlines()
        new = text.splitlines()
        if prev[:2] == new[:2]:
            ours = {l.split("|")[1].strip() for l in new[2:] if l.startswith("|")}
            kept = [l for l in prev[2:] if l.startswith("|") and l.split("|")[1].strip() not in ours]
            rows = {l.split("|")[1].strip(): l for l in kept + [l for l in new[2:] if l.startswith("|")]}
            order = [m for m in MODELS if m in rows] + [m for m in rows if m not in MODELS]
            text = "\n".join(new[:2] + [rows[m] for m in order] + [l for l in new[2:] if not l.startswith("|")])
    block = f"{MARK}\n{text}\n{END}"
    if MARK in old and END in old:
        new = old[:old.index(MARK)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block + "\n"
    with open(path, "w") as f:
        f.write(new)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    p.add_argument("--runs", type=int, default=3, help="timed (sg, torch) pairs per model (default 3)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--limit-train", type=int, help="pass --limit-train N to both (smoke tests only)")
    p.add_argument("--limit-eval", type=int, help="pass --limit-eval N to both (smoke tests only)")
    p.add_argument("--one-thread", action="store_true", help="add a 1-thread column")
    p.add_argument("--cold", action="store_true", help="no untimed warm-up run")
    p.add_argument("--write", metavar="FILE", help="put the table into FILE between the cli_epoch markers")
    p.add_argument("--json", metavar="FILE", help="write every run's wall time here")
    args = p.parse_args(argv)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    where = machine()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    data = os.environ.get("SCRATCHGEN_DATA")
    log(f"{where}; data: {data or 'bundled subset (SCRATCHGEN_DATA unset)'}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cli_epoch_") as tmp:
        for model in args.models:
            row = {"model": model}
            row["default"], sg = measure(model, args, False, tmp, log)
            shown = [a for a in sg[1:] if a != "--no-progress"]
            row["command"] = " ".join(["scratchgen"] + shown[:shown.index("--out")])
            if args.one_thread:
                row["one"], _ = measure(model, args, True, tmp, log)
            rows.append(row)
    text = table(rows, args.one_thread, where, date)
    if data is None:
        text += "\n\n(data: the bundled MNIST subset; the binarized-MNIST models need $SCRATCHGEN_DATA)"
    print(text)
    if args.write:
        write_section(args.write, text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": where, "date": date, "data": data, "args": vars(args), "rows": rows}, f, indent=1)
    return 0 if all(r["default"]["sg"] and r["default"]["torch"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
