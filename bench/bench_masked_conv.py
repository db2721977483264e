#!/usr/bin/env python
"""PixelCNN masked convolution: scratchgen vs torch, and each CPU kernel vs the NumPy reference.

1. The op through the engine, `masked_conv2d(x, w, b, mask_type)` forward + backward (gradients for
   x, w and b from an upstream gradient), against torch: `F.conv2d(x, w * mask, b, padding=k // 2)`
   with x, w, b requiring grad, then `y.backward(g)`. Also the forward alone (no_grad; torch still
   multiplies by the mask). Both sides are checked to agree before timing.
2. The kernels (scratchgen.kernels.masked_conv): forward, input gradient and weight gradient of
   each CPU implementation ('gemm': im2col over the unmasked taps + BLAS, the default; 'numba':
   direct loops; 'reference': one tensordot per tap) against the reference.

Shapes: PixelCNN on binarized MNIST, batch 64 of 28x28, float32: the first layer (mask 'A', 7x7,
1 -> 64 channels) and the hidden layers (mask 'B', 64 -> 64, k = 3, 5, 7).

    python bench/bench_masked_conv.py                                    # 1 thread, print the tables
    python bench/bench_masked_conv.py --threads 1,2 --md bench/results_masked_conv.md

or one thread count per run (each stays under a few minutes), merged into one report:

    python bench/bench_masked_conv.py --threads 1 --save-json /tmp/mc1.json
    python bench/bench_masked_conv.py --threads 2 --save-json /tmp/mc2.json
    python bench/bench_masked_conv.py --from-json /tmp/mc1.json /tmp/mc2.json --md bench/results_masked_conv.md

Each thread count runs in its own subprocess with OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS set before
numpy, numba and torch are imported (and torch.set_num_threads). torch is used here only.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (no numpy imported yet)

RESULT_TAG = "RESULT_JSON:"
SHAPES = [  # (label, C_in, C_out, k, mask_type)
    ("A 7x7 1->64", 1, 64, 7, "A"),
    ("B 3x3 64->64", 64, 64, 3, "B"),
    ("B 5x5 64->64", 64, 64, 5, "B"),
    ("B 7x7 64->64", 64, 64, 7, "B"),
]
IMPLS = ("reference", "gemm", "numba")
KERNELS = ("forward", "input grad", "weight grad")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1", help="thread count or comma list, one subprocess each (default 1)")
    p.add_argument("--md", default=None, help="also write the report to this markdown file")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--size", type=int, default=28, help="image height and width (default 28)")
    p.add_argument("--repeat", type=int, default=9, help="timed samples per op comparison (default 9)")
    p.add_argument("--kernel-repeat", type=int, default=5, help="timed samples per kernel comparison (default 5)")
    p.add_argument("--skip-kernels", action="store_true", help="time only part 1 (the op against torch)")
    p.add_argument("--quick", action="store_true", help="batch 8 and 3 samples (smoke test)")
    p.add_argument("--save-json", default=None, help="also save the results (and this command) to this file")
    p.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                   help="time nothing: write the report from results saved with --save-json")
    p.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)  # child mode
    return p.parse_args(argv)


ARGS = parse_args()
THREADS = [int(t) for t in ARGS.threads.split(",")]
IN_PROCESS = len(THREADS) == 1 and not ARGS.from_json
if IN_PROCESS:
    common.pin_threads(THREADS[0])  # before numpy / numba / torch


def stats(t):
    return {"median_ms": t.median * 1e3, "iqr_ms": t.iqr * 1e3, "min_ms": min(t.samples) * 1e3}


def timed(fns, repeat):
    """Interleaved samples of one call each (every call here takes milliseconds)."""
    return {k: stats(t) for k, t in common.compare(fns, warmup=2, repeat=repeat, number=1).items()}


def run_one(n_threads):
    import numpy as np
    import numba
    import torch
    import torch.nn.functional as F
    import scratchgen as sg
    from scratchgen.kernels import masked_conv as K, masked_conv_numba
    from scratchgen.ops import masked_conv2d

    common.pin_torch(n_threads)
    batch, size = (8, ARGS.size) if ARGS.quick else (ARGS.batch, ARGS.size)
    repeat, kernel_repeat = (3, 3) if ARGS.quick else (ARGS.repeat, ARGS.kernel_repeat)
    rng = np.random.default_rng(0)
    res = {"threads": n_threads, "numba_threads": numba.get_num_threads(), "torch_threads": torch.get_num_threads(),
           "blas": common.blas_threads(), "batch": batch, "size": size, "load_before": common.loadavg(),
           "op": [], "kernels": []}

    for label, c_in, c_out, k, mask_type in SHAPES:
        x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
        w = (rng.standard_normal((c_out, c_in, k, k)) / np.sqrt(c_in * k * k)).astype(np.float32)
        b = rng.standard_normal(c_out).astype(np.float32)
        g = rng.standard_normal((batch, c_out, size, size)).astype(np.float32)
        mask = K.pixelcnn_mask(c_out, c_in, k, mask_type)

        X, W, B = (sg.tensor(a, requires_grad=True) for a in (x, w, b))
        G = sg.tensor(g)
        tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))
        tm, tg = torch.from_numpy(mask), torch.from_numpy(g)

        def ours():
            y = masked_conv2d(X, W, B, mask_type)
            return sg.grad(y, [X, W, B], grad_outputs=G)

        def theirs():
            tx.grad = tw.grad = tb.grad = None
            y = F.conv2d(tx, tw * tm, tb, padding=k // 2)
            y.backward(tg)
            return tx.grad, tw.grad, tb.grad

        def ours_forward():
            with sg.no_grad():
                return masked_conv2d(X, W, B, mask_type)

        def theirs_forward():
            with torch.no_grad():
                return F.conv2d(tx, tw * tm, tb, padding=k // 2)

        for a, t in zip(ours(), theirs()):  # the same gradients before timing anything
            t = t.numpy()
            assert np.abs(a.numpy() - t).max() <= 1e-4 * np.abs(t).max(), f"{label}: gradients differ from torch"
        assert np.abs(ours_forward().numpy() - theirs_forward().numpy()).max() <= 1e-4 * np.abs(
            theirs_forward().numpy()).max(), f"{label}: outputs differ from torch"
        res["op"].append({"shape": label, "fwd_bwd": timed({"torch": theirs, "ours": ours}, repeat),
                          "fwd": timed({"torch": theirs_forward, "ours": ours_forward}, repeat)})
        print(f"[threads {n_threads}] {label}: op done", file=sys.stderr, flush=True)

        if ARGS.skip_kernels:
            continue
        calls = {
            "forward": lambda impl: K.masked_conv2d_forward(x, w, b, mask_type, impl=impl),
            "input grad": lambda impl: K.masked_conv2d_input_grad(g, w, mask_type, impl=impl),
            "weight grad": lambda impl: K.masked_conv2d_weight_grad(x, g, k, mask_type, impl=impl),
        }
        for name, call in calls.items():
            fns = {impl: (lambda call=call, impl=impl: call(impl)) for impl in IMPLS}
            res["kernels"].append({"shape": label, "kernel": name, "times": timed(fns, kernel_repeat)})
        print(f"[threads {n_threads}] {label}: kernels done", file=sys.stderr, flush=True)
    res["parallel_min"] = masked_conv_numba.PARALLEL_MIN
    res["threading_layer"] = numba.threading_layer()
    res["load_after"] = common.loadavg()
    return res


def run_subprocess(n):
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(n), "--emit-json", "--batch", str(ARGS.batch),
           "--size", str(ARGS.size), "--repeat", str(ARGS.repeat), "--kernel-repeat", str(ARGS.kernel_repeat)]
    cmd += ["--quick"] if ARGS.quick else []
    cmd += ["--skip-kernels"] if ARGS.skip_kernels else []
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child run with --threads {n} failed:\n{out.stdout[-3000:]}")
    for line in out.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise SystemExit(f"child run with --threads {n} printed no result")


def cell(t):
    return f"{t['median_ms']:.1f} ± {t['iqr_ms']:.1f}"


def op_table(results):
    rows = []
    for r in results:
        for row in r["op"]:
            for key, label in (("fwd_bwd", "forward + backward"), ("fwd", "forward, no_grad")):
                t, o = row[key]["torch"], row[key]["ours"]
                rows.append([r["threads"], row["shape"], label, cell(t), cell(o),
                             f"**{o['median_ms'] / t['median_ms']:.2f}**", f"{t['min_ms']:.1f} / {o['min_ms']:.1f}"])
    return common.md_table(["threads", "layer", "pass", "torch ms", "scratchgen ms", "ratio ours/torch",
                            "min ms torch / ours"], rows)


def kernel_table(results):
    rows = []
    for r in results:
        for k in r["kernels"]:
            ref, gemm, nb = (k["times"][c] for c in IMPLS)
            rows.append([r["threads"], k["shape"], k["kernel"], cell(ref), cell(gemm), cell(nb),
                         f"**{ref['median_ms'] / gemm['median_ms']:.2f}x**",
                         f"{ref['median_ms'] / nb['median_ms']:.2f}x"])
    return common.md_table(["threads", "layer", "kernel", "reference ms", "gemm ms (default)", "numba ms",
                            "gemm speed-up", "numba speed-up"], rows)


def summary(results):
    lines = []
    for r in results:
        ratios = ", ".join(f"{row['shape']}: **{row['fwd_bwd']['ours']['median_ms'] / row['fwd_bwd']['torch']['median_ms']:.2f}**"
                           for row in r["op"])
        lines.append(f"- {r['threads']} thread(s), forward + backward, ours/torch (lower is better): {ratios}.")
    return lines


def rates(results):
    """GFLOP/s of the forwards at 1 thread: torch counted dense, ours counted over the unmasked taps."""
    out = []
    for r in results:
        for row in r["op"] if r["threads"] == 1 else []:
            label, c_in, c_out, k, _ = next(s for s in SHAPES if s[0] == row["shape"])
            if c_in == 1:
                continue
            dense = 2.0 * r["batch"] * c_out * c_in * r["size"] ** 2 * k * k
            used = dense * ((k // 2) * (k + 1) + 1) / (k * k)
            t, o = row["fwd"]["torch"]["median_ms"], row["fwd"]["ours"]["median_ms"]
            out.append(f"{label}: torch {dense / t / 1e6:.0f}, ours {used / o / 1e6:.0f}")
    return ("Forward rates at 1 thread (GFLOP/s; torch counted dense, ours over the unmasked taps): "
            + "; ".join(out) + ".") if out else ""


def report(results, info, commands):
    v = info["versions"]
    r0 = results[0]
    lines = [
        "# PixelCNN masked convolution: scratchgen vs torch, and the kernels",
        "",
        f"- Date: {info['date']}",
        f"- Machine: {info['cpu']}, nproc={info['nproc']} (affinity {info['affinity']}), {info['platform']}",
        f"- Versions: python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, torch {v['torch']}, "
        f"scratchgen {v['scratchgen']} (git {info['git']}; the working tree had uncommitted changes)",
        "- Commands: " + "; ".join(f"`{c}`" for c in commands) + " (one process per thread count; "
        "OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS set before "
        f"numpy, numba and torch are imported, torch.set_num_threads(n); numba threading layer: "
        f"{r0.get('threading_layer')}; PARALLEL_MIN = {r0.get('parallel_min')} multiply-adds)",
        "- Threads seen: " + "; ".join(f"n={r['threads']}: numba {r['numba_threads']}, torch {r['torch_threads']}, "
                                       f"BLAS {r['blas']}" for r in results),
        "- 1-min load average before/after each run: " + "; ".join(
            f"n={r['threads']}: {common.fmt(r.get('load_before'))}/{common.fmt(r.get('load_after'))}" for r in results)
        + f" (nproc = {info['nproc']}: other jobs shared the machine, so absolute times are pessimistic; "
          "the contenders' samples are interleaved, so the ratios are the figures to read)",
        f"- Data: batch {r0['batch']}, {r0['size']}x{r0['size']}, float32, x and g ~ N(0, 1), weights ~ N(0, 1/fan_in). "
        "Timing: `bench/common.py:compare`, two warm-up calls each, then samples interleaved round-robin; "
        "median ± IQR in ms per call, and the minimum. Ratios use medians.",
        "",
        "## Summary (medians, this run)",
        "",
        *summary(results),
        "",
        "## 1. The op through the engine vs torch",
        "",
        "scratchgen: `y = masked_conv2d(x, w, b, mask_type)`, then `sg.grad(y, [x, w, b], grad_outputs=g)` "
        "(kernels: forward, input gradient, weight gradient; the bias gradient is `g.sum((0, 2, 3))`). "
        "torch: `y = F.conv2d(x, w * mask, b, padding=k // 2)` with x, w, b requiring grad, then "
        "`y.backward(g)` (the gradients for x, w and b; the mask product and its backward included, as a "
        "masked layer in torch has to do). Gradients for x are computed for the first layer too (x is the "
        "data there, so a model would skip them; both sides do the same work). 'forward, no_grad' is the "
        "forward alone (torch under `torch.no_grad()`, still multiplying by the mask).",
        "",
        op_table(results),
        "",
    ]
    if any(r["kernels"] for r in results):
        lines += [
            "## 2. Kernels vs the NumPy reference",
            "",
            "`scratchgen.kernels.masked_conv` with `impl=`: 'reference' (NumPy: one `tensordot` per unmasked "
            "tap over shifted slices of a padded input), 'gemm' (im2col restricted to the unmasked taps, then "
            "one BLAS product per image and channel group; the default for NumPy arrays) and 'numba' (direct "
            "loops over the unmasked taps, no BLAS; prange over the (image, channel) planes: these calls are "
            "far above PARALLEL_MIN, so the parallel kernels run, with the thread count of the row). "
            "Times include the dispatcher (checks, padding, output allocation). Speed-up = reference / impl.",
            "",
            kernel_table(results),
            "",
        ]
    lines += [
        "## Notes",
        "",
        "- Why it is faster than torch: only the unmasked taps are computed: for a k x k kernel, "
        "p(k+1) taps plus the centre (p = k // 2), i.e. 5 of 9, 13 of 25 and 25 of 49 taps for k = 3, 5, 7 "
        "(24 of 49 for the 'A' layer with one channel), in all three passes. torch (oneDNN) runs its dense "
        "convolution near the core's peak, faster per multiply-add than BLAS on the im2col matrix plus the "
        "cost of building it; halving the taps more than makes up for that. " + rates(results),
        "- The 'A' 1 -> 64 layer: with one input channel the im2col matrix has only 24 rows and the products "
        "are memory-bound; torch's forward is as fast as ours there, its backward is the slow part.",
        "- 'numba' is the BLAS-free implementation (and the model of the GPU kernels): an inner loop that "
        "multiply-adds a whole shifted plane, four channels per pass. It cannot block for registers as BLAS "
        "does, so it stays ~2x behind 'gemm' at these shapes and is not the default.",
        "- Threads: with several BLAS threads, the 'gemm' kernels make BLAS single-threaded for the call and "
        "split the images over that many threads of their own (one fork-join per call; the im2col copies run "
        "in parallel too). Left to BLAS, each per-image product would be a parallel region, and on an "
        "oversubscribed machine (load above the core count, as here) a region waits for a descheduled thread: "
        "see the 2-thread 'reference' column (one BLAS-threaded tensordot per tap), up to 100x slower than "
        "with one thread. On this loaded machine 2 threads gain little or nothing over 1 for any contender "
        "(torch loses the most); the 2-thread rows measure the machine's load as much as the code.",
        "- GPU implementations ('cuda': Numba CUDA; 'cupy': CuPy RawKernels) are not timed: no GPU here. They "
        "are tested under the Numba CUDA simulator and, for the CuPy CUDA C source, compiled with `nvcc --ptx` "
        "(tests/test_masked_conv_cuda.py).",
        "",
    ]
    return "\n".join(lines)


def main():
    if ARGS.emit_json:
        print(RESULT_TAG + json.dumps(run_one(THREADS[0])))
        return
    command = ("python bench/bench_masked_conv.py " + " ".join(sys.argv[1:])).strip()
    if ARGS.from_json:
        saved = []
        for path in ARGS.from_json:
            with open(path) as f:
                saved.append(json.load(f))
        results = [r for s in saved for r in s["results"]]
        commands = [s["command"] for s in saved] + [command]
        info = saved[0]["info"]
    else:
        results = [run_one(THREADS[0])] if IN_PROCESS else [run_subprocess(n) for n in THREADS]
        import numpy  # noqa: F401  (for machine_info's version lookup)
        import numba  # noqa: F401
        import torch  # noqa: F401
        import scratchgen  # noqa: F401
        info = common.machine_info()
        commands = [command]
        if ARGS.save_json:
            with open(ARGS.save_json, "w") as f:
                json.dump({"results": results, "info": info, "command": command}, f)
    text = report(results, info, commands)
    print(text)
    if ARGS.md:
        with open(ARGS.md, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
