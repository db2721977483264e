#!/usr/bin/env python
"""Optimizer step time: scratchgen (a fused Numba kernel per parameter) vs torch.optim, CPU, float32.

Model: the parameters of an MLP 784-1024-256-10 (weights and biases, 6 tensors, 1,068,810 parameters)
with random gradients, set once. What is timed is `opt.step()` alone (median over interleaved repeats,
after warm-up), for Adam (lr 1e-3) and SGD (lr 1e-2, momentum 0.9). Same dtype and thread count on
both sides: NUMBA_NUM_THREADS / OMP_NUM_THREADS etc. are set before anything is imported, and
torch.set_num_threads(n). Torch runs its single-tensor (foreach=False), foreach=True and fused=True
implementations where the installed torch supports them on CPU.

    python bench/bench_optim.py                       # n = os.cpu_count() threads
    python bench/bench_optim.py --threads 1 --md bench/results_optim.md
"""
import argparse
import contextlib
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (imports nothing heavy)

WIDTHS = (784, 1024, 256, 10)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=200, help="timed samples per contender (default 200)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--md", default=None, help="also write the report to this markdown file")
    return p.parse_args(argv)


def mlp_shapes(widths):
    return [s for a, b in zip(widths, widths[1:]) for s in ((b, a), (b,))]  # torch Linear layout


def main(argv=None):
    args = parse_args(argv)
    common.pin_threads(args.threads)
    import numpy as np
    import numba
    import torch
    import scratchgen as sg
    from scratchgen.kernels import force_impl
    common.pin_torch(args.threads)
    numba.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    shapes = mlp_shapes(WIDTHS)
    init = [(rng.standard_normal(s) * 0.05).astype(np.float32) for s in shapes]
    grads = [(rng.standard_normal(s) * 1e-3).astype(np.float32) for s in shapes]
    n_params = sum(x.size for x in init)

    def ours(make, impl=None):
        ps = [sg.tensor(x, requires_grad=True) for x in init]
        for p, g in zip(ps, grads):
            p.grad = sg.Tensor(g.copy())
        opt = make(ps)

        def step():
            with force_impl(impl, "optim") if impl else contextlib.nullcontext():
                opt.step()
        return step

    def theirs(make, **kw):
        ps = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in init]
        for p, g in zip(ps, grads):
            p.grad = torch.from_numpy(g.copy())
        try:
            opt = make(ps, **kw)
            opt.step()
        except (RuntimeError, TypeError, ValueError) as e:  # e.g. fused not supported on this CPU/version
            print(f"skipping torch {kw}: {e}", file=sys.stderr)
            return None
        return opt.step

    cases = {
        "Adam": (lambda ps: sg.optim.Adam(ps, lr=1e-3), lambda ps, **kw: torch.optim.Adam(ps, lr=1e-3, **kw)),
        "SGD momentum": (lambda ps: sg.optim.SGD(ps, lr=1e-2, momentum=0.9),
                         lambda ps, **kw: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, **kw)),
    }
    rows = []
    for name, (make_ours, make_theirs) in cases.items():
        fns = {"scratchgen (fused Numba)": ours(make_ours),
               "scratchgen (NumPy reference path)": ours(make_ours, "numpy"),
               "torch foreach=False": theirs(make_theirs, foreach=False),
               "torch foreach=True": theirs(make_theirs, foreach=True),
               "torch fused=True": theirs(make_theirs, fused=True)}
        fns = {k: f for k, f in fns.items() if f is not None}
        t = common.compare(fns, warmup=args.warmup, repeat=args.repeat)
        mine = t["scratchgen (fused Numba)"].median
        for k, v in t.items():
            rows.append([name, k, f"{v.median * 1e6:.0f}", f"{v.iqr * 1e6:.0f}", f"{mine / v.median:.2f}"])

    info = common.machine_info()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, common.REPO_ROOT)]
                                   + (sys.argv[1:] if argv is None else argv))
    table = common.md_table(["optimizer", "implementation", "µs/step (median)", "IQR µs", "ours / this"], rows,
                            align="llrrr")
    report = "\n".join([
        "## Optimizer step (bench/bench_optim.py)",
        "",
        f"MLP {'-'.join(map(str, WIDTHS))} parameters ({len(shapes)} tensors, {n_params:,} float32 values), "
        f"random gradients; time of `opt.step()` only, median of {args.repeat} interleaved repeats after "
        f"{args.warmup} warm-up steps; {args.threads} thread(s) on both sides "
        f"(numba threading layer: {numba.threading_layer()}).",
        "",
        table,
        "",
        f"Command: `{command}`  ",
        f"Machine: {info['cpu']}, {info['nproc']} CPUs, 1-min load average at the end {common.fmt(common.loadavg())}; "
        f"torch {torch.__version__}, numpy {np.__version__}, numba {numba.__version__}, {info['date']}.",
        "",
    ])
    print(report)
    if args.md:
        with open(args.md, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
