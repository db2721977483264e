#!/usr/bin/env python
"""Sampling time of PixelCNN and Gated PixelCNN at the CLI's defaults (model sizes, n_samples),
scratchgen's cached row sampler against its naive full-image sampler and the torch twin's naive one,
each run in its own process at default threads; the parent alternates the order and reports medians.

    python bench/conv_sampling.py                           # both models, 3 rounds
    python bench/conv_sampling.py --models pixelcnn --runs 1 --samplers cached torch

The cached and naive scratchgen samplers draw identical images (tests/test_pixelcnn.py checks it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SAMPLERS = ("cached", "naive", "torch")


def _spec(model_name):
    from scratchgen.specs import create
    return create(model_name, {})


def worker(model_name, sampler, seed=0):
    """Seconds to draw the spec's n_samples images with one sampler (the model at its seed-0 init)."""
    import scratchgen as sg
    spec = _spec(model_name)
    sg.manual_seed(seed)
    model = spec.build()
    model.eval()
    n = spec.n_samples
    if sampler == "torch":
        sys.path.insert(0, HERE)
        import torch
        import torch_pixelcnn as tp
        kind = "pixelcnn" if model_name == "pixelcnn" else "gated"
        c = spec.config
        twin = tp.build_torch(kind, c["channels"], c["blocks" if kind == "pixelcnn" else "layers"], c["out_channels"])
        tp.from_scratchgen(twin, model)
        twin.eval()
        t = time.perf_counter()
        with torch.no_grad():
            tp.autoregressive_sample(twin, n, seed=seed)
        return time.perf_counter() - t
    t = time.perf_counter()
    if sampler == "cached":
        model.sample(n, seed=seed)
    else:
        from scratchgen.models.pixelcnn import autoregressive_sample
        with sg.no_grad():
            autoregressive_sample(model, n, (1, 28, 28), seed)
    return time.perf_counter() - t


def run_worker(model, sampler):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", sampler, "--models", model]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    if r.returncode:
        print(f"  FAILED {' '.join(cmd)}\n{r.stderr[-1500:]}")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["pixelcnn", "gated_pixelcnn"])
    p.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--worker", choices=SAMPLERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps({"s": worker(args.models[0], args.worker)}))
        return
    print("| model | sampler | seconds (median) | runs |\n| --- | --- | --- | --- |")
    for model in args.models:
        times = {s: [] for s in args.samplers}
        for i in range(args.runs):
            order = args.samplers if i % 2 == 0 else args.samplers[::-1]
            for s in order:
                t = run_worker(model, s)
                if t is not None:
                    times[s].append(t)
        for s in args.samplers:
            if times[s]:
                print(f"| {model} | {s} | {statistics.median(times[s]):.2f} | "
                      f"{', '.join(f'{t:.2f}' for t in times[s])} |", flush=True)


if __name__ == "__main__":
    main()
