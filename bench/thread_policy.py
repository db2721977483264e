#!/usr/bin/env python
"""Measure the CPU thread policy (scratchgen/threads.py) against the alternatives it was chosen over.

Each configuration runs in its own process with only its variables set on top of a clean
environment (no OMP_*, OPENBLAS_*, NUMBA_*, SCRATCHGEN_THREADS), and times training steps of the
registered models (forward, backward, optimizer step, on a batch of the model's training data),
alternating configurations, median over runs. The configurations:

    policy              nothing set: what a user gets (Numba's OpenMP workers sleep when idle)
    spinning OpenMP     OMP_WAIT_POLICY=ACTIVE: Numba's workers spin between regions, as libgomp
                        does by default for a while after each one
    spin N              GOMP_SPINCOUNT=N: workers spin N iterations after a region, then sleep
    workqueue layer     NUMBA_THREADING_LAYER=workqueue: Numba's own pool (not thread-safe)
    Numba 1 BLAS all    NUMBA_NUM_THREADS=1
    1 thread            SCRATCHGEN_THREADS=1

    SCRATCHGEN_DATA=../shared/data python bench/thread_policy.py --models made,vae,nice --runs 3

Prints a markdown table of median step times in ms.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "policy": {},
    "spinning OpenMP": {"OMP_WAIT_POLICY": "ACTIVE"},
    "spin 1k": {"GOMP_SPINCOUNT": "1000"},
    "spin 10k": {"GOMP_SPINCOUNT": "10000"},
    "spin 100k": {"GOMP_SPINCOUNT": "100000"},
    "workqueue layer": {"NUMBA_THREADING_LAYER": "workqueue"},
    "Numba 1 BLAS all": {"NUMBA_NUM_THREADS": "1"},
    "1 thread": {"SCRATCHGEN_THREADS": "1"},
}
BATCH = {"made": 100, "vae": 100, "nice": 200, "gan": 64, "mlp": 128}


def step_time(model, batch, steps, warmup):
    """Median ms of one training step of a registered model (run inside the worker process)."""
    import numpy as np
    import scratchgen as sg
    from scratchgen.specs import create
    spec = create(model, {"batch_size": batch})
    net = spec.build()
    opt = spec.make_optimizer(net)
    data = spec.train_dataset()
    arrays = data if isinstance(data, tuple) else (data,)
    xb = tuple(sg.tensor(np.asarray(a[:batch])) for a in arrays)

    def step():
        spec.training_step(net, xb, opt)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("OMP_", "GOMP_", "OPENBLAS_NUM", "MKL_", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "SCRATCHGEN_THREADS"))}
    env.update(extra)
    return env


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="made,vae,nice")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names from the list above")
    p.add_argument("--runs", type=int, default=3, help="processes per (model, configuration)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "STEPS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        model, steps = a.worker[0], int(a.worker[1])
        print(json.dumps({"ms": step_time(model, BATCH.get(model, 100), steps, warmup=max(3, steps // 5))}))
        return 0
    models, configs = a.models.split(","), a.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    results = {(m, c): [] for m in models for c in configs}
    for m in models:
        steps = a.steps if m != "nice" else max(5, a.steps // 5)
        for _ in range(a.runs):
            for c in configs:  # alternate, so drifting load hits every configuration alike
                out = subprocess.run([sys.executable, __file__, "--worker", m, str(steps)], env=clean_env(CONFIGS[c]),
                                     capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{m} / {c} failed:\n{out.stderr[-2000:]}")
                results[m, c].append(json.loads(out.stdout.strip().splitlines()[-1])["ms"])
    print("| model (batch) | " + " | ".join(configs) + " |")
    print("| --- |" + " ---: |" * len(configs))
    for m in models:
        cells = [f"{statistics.median(results[m, c]):.2f}" for c in configs]
        print(f"| {m} ({BATCH.get(m, 100)}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
