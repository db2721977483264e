#!/usr/bin/env python
"""Autograd engine overhead: scratchgen vs PyTorch CPU eager, same run, float32, same threads.

1. Per-op overhead: a 20-op elementwise chain on a 1-element tensor,
   (a) forward with grad recording on, (b) forward + backward, (c) forward under no_grad.
2. Forward + backward of a 784-500-784 MLP (Linear-ReLU-Linear, BCE-with-logits against the
   input, mean reduction), batch 100 and 1000.

    python bench/bench_engine.py                      # 1 thread, print the tables
    python bench/bench_engine.py --threads 1,2 --md bench/results_engine.md
                                                      # one subprocess per thread count
    python bench/bench_engine.py --profile            # cProfile of the scratchgen side

Thread counts are fixed (OMP/OPENBLAS/MKL_NUM_THREADS and torch.set_num_threads) before
numpy is imported, so each thread count runs in its own process.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (no numpy imported yet)

RESULT_TAG = "RESULT_JSON:"
N_OPS = 20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1",
                   help="thread count, or a comma list (e.g. 1,2): one subprocess per count (default 1)")
    p.add_argument("--md", default=None, help="also write the report to this markdown file")
    p.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    p.add_argument("--repeat", type=int, default=None, help="timed samples per measurement")
    p.add_argument("--batches", default="100,1000", help="MLP batch sizes (default 100,1000)")
    p.add_argument("--profile", action="store_true",
                   help="profile the scratchgen side (cProfile; pyinstrument too if installed)")
    p.add_argument("--profile-top", type=int, default=20, help="rows per profile listing")
    p.add_argument("--affinity", action="store_true", help="also bind the process to the first N CPUs")
    p.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)  # child mode
    return p.parse_args(argv)


ARGS = parse_args()
THREADS = [int(t) for t in ARGS.threads.split(",")]
if len(THREADS) == 1:
    common.pin_threads(THREADS[0], affinity=ARGS.affinity)  # before numpy / torch / scratchgen


# ---------------------------------------------------------------------------------------
# The workloads. Both frameworks run literally the same Python code.
# ---------------------------------------------------------------------------------------
def chain(y):
    """20 elementwise ops; values stay in a bounded range for any input in [-1, 1].
    Mix: 4 mul-scalar, 3 add-scalar, 1 sub-scalar, 2 neg, 4 tanh, 3 sigmoid, 3 exp."""
    y = y * 0.5
    y = y + 0.1
    y = y.tanh()
    y = y.sigmoid()
    y = y.exp()
    y = -y
    y = y.tanh()
    y = y * 2.0
    y = y + 1.0
    y = y.sigmoid()
    y = y - 0.5
    y = y.exp()
    y = y * 0.3
    y = y.tanh()
    y = -y
    y = y.sigmoid()
    y = y + 0.2
    y = y * 1.5
    y = y.exp()
    y = y.tanh()
    return y


def chain_numpy(y, np):
    """The same 20 ops on a bare 1-element ndarray: the floor for a NumPy-backed engine."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    y = y * np.float32(0.5)
    y = y + np.float32(0.1)
    y = np.tanh(y)
    y = sig(y)
    y = np.exp(y)
    y = -y
    y = np.tanh(y)
    y = y * np.float32(2.0)
    y = y + np.float32(1.0)
    y = sig(y)
    y = y - np.float32(0.5)
    y = np.exp(y)
    y = y * np.float32(0.3)
    y = np.tanh(y)
    y = -y
    y = sig(y)
    y = y + np.float32(0.2)
    y = y * np.float32(1.5)
    y = np.exp(y)
    y = np.tanh(y)
    return y


def make_chain_fns(sg, torch, np):
    xs = sg.tensor(np.array([0.3], dtype=np.float32), requires_grad=True)
    xt = torch.tensor([0.3], dtype=torch.float32, requires_grad=True)
    xn = np.array([0.3], dtype=np.float32)

    def sg_fwd():
        chain(xs)

    def sg_fwd_bwd():
        xs.grad = None
        chain(xs).backward()

    def sg_nograd():
        with sg.no_grad():
            chain(xs)

    def t_fwd():
        chain(xt)

    def t_fwd_bwd():
        xt.grad = None
        chain(xt).backward()

    def t_nograd():
        with torch.no_grad():
            chain(xt)

    def np_fwd():
        chain_numpy(xn, np)

    # Same numbers from both frameworks, or the comparison is meaningless.
    ys, yt = chain(xs), chain(xt)
    ys.backward()
    yt.backward()
    assert np.allclose(ys.data, yt.detach().numpy(), rtol=1e-5), (ys.data, yt)
    assert np.allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-4), (xs.grad.data, xt.grad)
    assert ys.dtype == np.float32 and xs.grad.dtype == np.float32, (ys.dtype, xs.grad.dtype)
    xs.grad = None
    xt.grad = None
    return {"fwd": (sg_fwd, t_fwd), "fwd_bwd": (sg_fwd_bwd, t_fwd_bwd), "nograd": (sg_nograd, t_nograd),
            "numpy": np_fwd}


def make_mlp_fns(sg, torch, np, batch, seed=0):
    """784-500-784 Linear-ReLU-Linear, loss = mean BCE-with-logits(logits, x); x ~ U[0, 1).
    Weights stored (in, out) and used as x @ W + b in scratchgen, torch-raw and numpy."""
    import torch.nn.functional as F
    rng = np.random.default_rng(seed)
    d_in, d_h = 784, 500
    w1 = (rng.standard_normal((d_in, d_h)) / np.sqrt(d_in)).astype(np.float32)
    b1 = np.zeros(d_h, np.float32)
    w2 = (rng.standard_normal((d_h, d_in)) / np.sqrt(d_h)).astype(np.float32)
    b2 = np.zeros(d_in, np.float32)
    x = rng.random((batch, d_in), dtype=np.float32)

    sp = [sg.tensor(a, requires_grad=True) for a in (w1, b1, w2, b2)]
    sx = sg.tensor(x)

    def sg_step():
        for p in sp:
            p.grad = None
        W1, B1, W2, B2 = sp
        h = (sx @ W1 + B1).relu()
        logits = h @ W2 + B2
        loss = sg.binary_cross_entropy_with_logits(logits, sx)
        loss.backward()
        return loss

    tp = [torch.tensor(a, requires_grad=True) for a in (w1, b1, w2, b2)]
    tx = torch.from_numpy(x.copy())

    def t_step():
        for p in tp:
            p.grad = None
        W1, B1, W2, B2 = tp
        h = (tx @ W1 + B1).relu()
        logits = h @ W2 + B2
        loss = F.binary_cross_entropy_with_logits(logits, tx)
        loss.backward()
        return loss

    # The idiomatic torch spelling: nn.Linear (addmm with the bias fused, W stored (out, in)).
    net = torch.nn.Sequential(torch.nn.Linear(d_in, d_h), torch.nn.ReLU(), torch.nn.Linear(d_h, d_in))
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1.T.copy()))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.from_numpy(w2.T.copy()))
        net[2].bias.zero_()

    def t_nn_step():
        net.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(net(tx), tx)
        loss.backward()
        return loss

    nw = [w1, b1, w2, b2]

    def np_step():
        """Hand-written forward + backward in NumPy: the floor for a NumPy engine."""
        W1, B1, W2, B2 = nw
        a = x @ W1 + B1
        h = np.maximum(a, 0)
        z = h @ W2 + B2
        loss = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - z * x).mean()
        e = np.exp(-np.abs(z))
        sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
        gz = (sig - x) * np.float32(1.0 / z.size)
        gW2, gB2 = h.T @ gz, gz.sum(0)
        gh = gz @ W2.T
        ga = gh * (a > 0)
        gW1, gB1 = x.T @ ga, ga.sum(0)
        return loss, gW1, gB1, gW2, gB2

    ls, lt, ln = sg_step(), t_step(), t_nn_step()
    lnp, *gnp = np_step()
    assert abs(float(ls.data) - lt.item()) < 1e-4 * abs(lt.item()) + 1e-6, (ls, lt)
    assert abs(ln.item() - lt.item()) < 1e-4 * abs(lt.item()) + 1e-6, (ln, lt)
    assert abs(float(lnp) - lt.item()) < 1e-4 * abs(lt.item()) + 1e-6, (lnp, lt)
    for p, q, g in zip(sp, tp, gnp):
        assert p.grad.dtype == np.float32, p.grad.dtype
        scale = float(np.abs(q.grad.numpy()).max()) + 1e-12
        assert float(np.abs(p.grad.data - q.grad.numpy()).max()) < 1e-3 * scale, "grad mismatch vs torch"
        assert float(np.abs(g - q.grad.numpy()).max()) < 1e-3 * scale, "numpy reference grad mismatch"
    return {"sg": sg_step, "torch": t_step, "torch_nn": t_nn_step, "numpy": np_step}


# ---------------------------------------------------------------------------------------
# One thread count, in this process.
# ---------------------------------------------------------------------------------------
def engine_fingerprint():
    """sha1 over the engine sources as imported by this process: the engine changes under us
    while others work, and the git hash alone does not show uncommitted edits."""
    import glob
    import hashlib
    import scratchgen
    root = os.path.dirname(scratchgen.__file__)
    h = hashlib.sha1()
    names = ["tensor.py", "autograd.py", "grad_mode.py", "backend.py", "losses.py"]
    files = [os.path.join(root, n) for n in names] + sorted(glob.glob(os.path.join(root, "ops", "*.py")))
    for f in files:
        if os.path.exists(f):
            with open(f, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()[:12]


def run_one(n_threads):
    import numpy as np
    import torch
    import scratchgen as sg
    common.pin_torch(n_threads)
    torch.manual_seed(0)
    # Many short samples: on a shared machine the median then skips the samples that lost
    # the CPU to another process (a long sample would average them in).
    repeat = ARGS.repeat or (11 if ARGS.quick else 61)
    res = {"threads": n_threads, "torch_threads": torch.get_num_threads(), "engine": engine_fingerprint(),
           "blas_threads": common.blas_threads(), "chain": {}, "mlp": []}

    res["load_before"] = common.loadavg()
    fns = make_chain_fns(sg, torch, np)
    target = 0.005
    for key in ("fwd", "fwd_bwd", "nograd"):
        pair = dict(zip(("sg", "torch"), fns[key]))
        numbers = {k: common.autonumber(fn, target_s=target) for k, fn in pair.items()}
        times = common.compare(pair, warmup=max(3, min(numbers.values()) // 10), repeat=repeat, number=numbers)
        res["chain"][key] = {k: {"median_us": t.median * 1e6, "iqr_us": t.iqr * 1e6, "min_us": min(t.samples) * 1e6}
                             for k, t in times.items()}
    fn = fns["numpy"]
    t = common.timeit(fn, warmup=3, repeat=repeat, number=common.autonumber(fn, target_s=target))
    res["chain"]["numpy_floor"] = {"median_us": t.median * 1e6, "iqr_us": t.iqr * 1e6, "min_us": min(t.samples) * 1e6}

    for batch in (int(b) for b in ARGS.batches.split(",")):
        mfns = make_mlp_fns(sg, torch, np, batch)
        mrepeat = max(5, repeat * 2 // 3 if batch <= 100 else repeat // 3)
        times = common.compare(mfns, warmup=3, repeat=mrepeat, number=1)
        row = {"batch": batch}
        row.update({k: {"median_ms": t.median * 1e3, "iqr_ms": t.iqr * 1e3, "min_ms": min(t.samples) * 1e3,
                        "repeat": len(t.samples)} for k, t in times.items()})
        res["mlp"].append(row)
    res["load_after"] = common.loadavg()
    return res


def run_subprocess(n_threads):
    """This script with --threads n in a fresh interpreter (so the env vars apply to numpy)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(n_threads), "--emit-json",
           "--batches", ARGS.batches]
    if ARGS.quick:
        cmd.append("--quick")
    if ARGS.repeat:
        cmd += ["--repeat", str(ARGS.repeat)]
    if ARGS.affinity:
        cmd.append("--affinity")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"child run with --threads {n_threads} failed")
    for line in out.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise SystemExit(f"child run with --threads {n_threads} printed no result")


# ---------------------------------------------------------------------------------------
# Reporting.
# ---------------------------------------------------------------------------------------
CHAIN_LABELS = {"fwd": "(a) forward, grad on", "fwd_bwd": "(b) forward + backward", "nograd": "(c) forward, no_grad"}


def chain_table(results):
    rows = []
    for r in results:
        for key, label in CHAIN_LABELS.items():
            s, t = r["chain"][key]["sg"], r["chain"][key]["torch"]
            rows.append([r["threads"], label,
                         f"{s['median_us'] / N_OPS:.2f} ± {s['iqr_us'] / N_OPS:.2f}",
                         f"{t['median_us'] / N_OPS:.2f} ± {t['iqr_us'] / N_OPS:.2f}",
                         f"**{s['median_us'] / t['median_us']:.2f}x**",
                         f"{s['min_us'] / N_OPS:.2f} / {t['min_us'] / N_OPS:.2f}",
                         f"{s['median_us']:.1f}", f"{t['median_us']:.1f}"])
        f = r["chain"]["numpy_floor"]
        rows.append([r["threads"], "bare NumPy ufuncs (floor, fwd only)",
                     f"{f['median_us'] / N_OPS:.2f} ± {f['iqr_us'] / N_OPS:.2f}", "-", "-",
                     f"{f['min_us'] / N_OPS:.2f} / -", f"{f['median_us']:.1f}", "-"])
    return common.md_table(["threads", "20-op chain, 1 element", "scratchgen µs/op", "torch µs/op",
                            "ratio sg/torch", "min µs/op sg / torch", "sg µs/chain", "torch µs/chain"], rows)


def mlp_table(results):
    rows = []
    for r in results:
        for m in r["mlp"]:
            s, t, tn, npf = m["sg"], m["torch"], m["torch_nn"], m["numpy"]
            rows.append([r["threads"], m["batch"],
                         f"{s['median_ms']:.2f} ± {s['iqr_ms']:.2f}",
                         f"{t['median_ms']:.2f} ± {t['iqr_ms']:.2f}",
                         f"**{s['median_ms'] / t['median_ms']:.2f}x**",
                         f"{s['min_ms']:.2f} / {t['min_ms']:.2f}",
                         f"{tn['median_ms']:.2f} ± {tn['iqr_ms']:.2f}",
                         f"{npf['median_ms']:.2f} ± {npf['iqr_ms']:.2f}",
                         f"{s['median_ms'] / npf['median_ms']:.2f}x"])
    return common.md_table(["threads", "batch", "scratchgen ms/iter", "torch ms/iter (same ops)",
                            "ratio sg/torch", "min ms sg / torch", "torch nn.Linear ms/iter",
                            "hand NumPy ms/iter", "ratio sg/NumPy"], rows)


def report(results, info, command):
    v = info["versions"]
    lines = [
        "# Engine overhead: scratchgen vs PyTorch CPU eager",
        "",
        f"- Date: {info['date']}",
        f"- Machine: {info['cpu']}, nproc={info['nproc']} (affinity {info['affinity']}), {info['platform']}",
        f"- Versions: python {v['python']}, numpy {v['numpy']}, torch {v['torch']}, numba {v['numba']}, "
        f"scratchgen {v['scratchgen']} (git {info['git']}; engine sources sha1 "
        + ", ".join(f"n={r['threads']}: {r.get('engine', '?')}" for r in results) + ")",
        f"- Command: `{command}` (each thread count runs in its own subprocess, "
        "OMP/OPENBLAS/MKL_NUM_THREADS set before numpy is imported, `torch.set_num_threads(n)`, "
        "1 torch inter-op thread)",
        "- Thread pools seen: " + "; ".join(
            f"n={r['threads']}: torch={r['torch_threads']}, "
            + ", ".join(f"{k}={n}" for k, n in r["blas_threads"].items()) for r in results),
        "- 1-min load average before/after each run: " + "; ".join(
            f"n={r['threads']}: {common.fmt(r.get('load_before'))}/{common.fmt(r.get('load_after'))}"
            for r in results) + " (a shared 2-vCPU VM: other jobs were running; see notes)",
        "- Timing: `bench/common.py:compare` (interleaved `timeit`: the contenders' samples "
        "alternate round-robin so load drift hits all of them alike) — warm-up calls, then many short samples (chain: "
        "61 samples of ~5 ms of back-to-back chains each, divided by the count; MLP: one iteration "
        "per sample, 40 samples at batch 100, 20 at batch 1000). Reported: median ± IQR (and the "
        "minimum, the least-disturbed sample). GC on. Ratios use medians.",
        "- dtype float32 everywhere; results of both frameworks are checked to agree (outputs and "
        "gradients) before timing.",
        "",
        "## 1. Per-op overhead: 20-op elementwise chain on a 1-element tensor",
        "",
        "Ops (same Python code for both frameworks, `bench_engine.py:chain`): 4× mul-scalar, "
        "3× add-scalar, 1× sub-scalar, 2× neg, 4× tanh, 3× sigmoid, 3× exp. Input shape (1,), "
        "`requires_grad=True`. (b) sets `x.grad = None` then calls `.backward()` on the (1,)-shaped "
        "output. µs/op = chain time / 20 (for (b) it covers the op's forward and its backward).",
        "",
        chain_table(results),
        "",
        "## 2. MLP forward + backward",
        "",
        "784-500-784, Linear → ReLU → Linear, loss = mean BCE-with-logits(logits, target = input), "
        "input ~ U[0,1) float32. Raw tensors, weights (in, out) used as `x @ W + b` in scratchgen "
        "and in the 'torch (same ops)' column (`F.binary_cross_entropy_with_logits`). Grads set "
        "to None each iteration; no optimizer step. 'torch nn.Linear' is the idiomatic module "
        "version (fused addmm); 'hand NumPy' is a hand-written forward+backward in NumPy — the floor "
        "for any NumPy-backed engine on this machine.",
        "",
        mlp_table(results),
        "",
        "## Notes",
        "",
    ]
    nproc = info["nproc"] or 1
    for r in results:
        load = max(x for x in (r.get("load_before"), r.get("load_after"), 0.0) if x is not None)
        if load + r["threads"] > nproc + 0.5:
            lines.append(f"- n={r['threads']}: the 1-min load average reached {load:.1f} on {nproc} CPUs, so this "
                         f"run competed with other processes for CPU time; the medians of many short "
                         f"interleaved samples and the min column are the robust figures. "
                         + ("Multi-threaded BLAS/OpenMP numbers suffer most: a thread that loses its CPU "
                            "stalls its partner at every barrier (see the IQRs)." if r["threads"] > 1 else ""))
    lines += [
        "- µs/op is the whole chain divided by 20; it includes the Python-level cost of the op "
        "(dispatch, graph recording) and the NumPy/ATen kernel on one element.",
        "- The profile section below (if present) comes from "
        "`python bench/bench_engine.py --profile --md bench/results_engine.md`, which appends to this file.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Profiling (scratchgen side).
# ---------------------------------------------------------------------------------------
def _cprofile(fn, n, top, sort):
    import cProfile
    import io
    import pstats
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        fn()
    pr.disable()
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s)
    st.strip_dirs().sort_stats(sort).print_stats(top)
    return s.getvalue()


def _components(sg, np, torch):
    """Cost of the pieces one scratchgen op is made of, on a 1-element float32 tensor."""
    from scratchgen.tensor import Tensor, as_tensor, record
    from scratchgen.ops import elementwise as E
    a = np.array([0.3], np.float32)
    x = sg.tensor(a, requires_grad=True)
    xc = sg.tensor(a)
    g = sg.tensor(np.array([1.0], np.float32))
    out = x.tanh()
    xt = torch.tensor([0.3], requires_grad=True)
    items = [
        ("np.tanh(a)  (ufunc on a (1,) float32 array)", lambda: np.tanh(a)),
        ("a * np.float32(0.5)", lambda: a * np.float32(0.5)),
        ("np.asarray(0.5, dtype=float32)", lambda: np.asarray(0.5, dtype=np.float32)),
        ("Tensor(a)", lambda: Tensor(a)),
        ("record(a, vjp, (x,))  grad on", lambda: record(a, E.tanh_vjp, (x,))),
        ("as_tensor(0.5, like=x)", lambda: as_tensor(0.5, like=x)),
        ("operands(x, 0.5)", lambda: E.operands(x, 0.5)),
        ("x.xp  (backend.array_module)", lambda: x.xp),
        ("x.tanh()  grad on", lambda: x.tanh()),
        ("x.sigmoid()  grad on", lambda: x.sigmoid()),
        ("x * 0.5  grad on", lambda: x * 0.5),
        ("x * 0.5  (x needs no grad)", lambda: xc * 0.5),
        ("-x  grad on", lambda: -x),
        ("tanh_vjp(g, out, x)  (under no_grad)", lambda: E.tanh_vjp(g, out, x)),
        ("torch: xt.tanh()  grad on", lambda: xt.tanh()),
        ("torch: xt * 0.5  grad on", lambda: xt * 0.5),
    ]
    rows = []
    for name, fn in items:
        number = common.autonumber(fn, target_s=0.002)
        with (sg.no_grad() if "vjp" in name else sg.enable_grad()):
            t = common.timeit(fn, warmup=100, repeat=41, number=number)
        rows.append([name, f"{min(t.samples) * 1e6:.3f}", f"{t.median * 1e6:.3f}"])
    return common.md_table(["piece", "min µs/call", "median µs/call"], rows)


def run_profile():
    import numpy as np
    import torch
    import scratchgen as sg
    common.pin_torch(THREADS[0])
    top = ARGS.profile_top
    fns = make_chain_fns(sg, torch, np)
    mfn = make_mlp_fns(sg, torch, np, 100)["sg"]
    sections = ["## Profile of the scratchgen side (`--profile`, 1 thread)", "",
                "### Component costs (1-element float32; 41 samples of ~2 ms; min = least-disturbed sample)", "", _components(sg, np, torch), ""]
    compact = list(sections)
    for title, fn, n in [("chain forward+backward ×20000", fns["fwd_bwd"][0], 20000),
                         ("chain forward, grad on ×20000", fns["fwd"][0], 20000),
                         ("chain forward, no_grad ×20000", fns["nograd"][0], 20000),
                         ("MLP batch 100 forward+backward ×200", mfn, 200)]:
        for sort in ("tottime", "cumulative"):
            body = ["", f"### cProfile: {title}, sorted by {sort}", "", "```", _cprofile(fn, n, top, sort).strip(), "```"]
            sections += body
            if sort == "tottime" and ("backward" in title):
                compact += body
    try:
        import pyinstrument
        for title, fn, n in [("chain forward+backward ×20000", fns["fwd_bwd"][0], 20000),
                             ("MLP batch 100 forward+backward ×200", mfn, 200)]:
            p = pyinstrument.Profiler(interval=0.0001)
            p.start()
            for _ in range(n):
                fn()
            p.stop()
            body = ["", f"### pyinstrument: {title}", "", "```",
                    p.output_text(unicode=True, color=False, show_all=False).strip(), "```"]
            sections += body
            compact += body
    except ImportError:
        sections.append("(pyinstrument not installed: `pip install pyinstrument` for a call-tree view)")
    print("\n".join(sections))
    return "\n".join(compact) + "\n"


def main():
    command = "python bench/bench_engine.py " + " ".join(sys.argv[1:])
    if ARGS.profile:
        text = run_profile()
        if ARGS.md:
            with open(ARGS.md, "a") as f:  # the components table, backward profiles, call trees
                f.write("\n" + text)
        return
    if len(THREADS) == 1 and ARGS.emit_json:
        print(RESULT_TAG + json.dumps(run_one(THREADS[0])))
        return
    if len(THREADS) == 1:
        results = [run_one(THREADS[0])]
    else:
        results = [run_subprocess(n) for n in THREADS]
    info = common.machine_info()
    text = report(results, info, command.strip())
    print(text)
    if ARGS.md:
        with open(ARGS.md, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
