#!/usr/bin/env python
"""Seconds per training step, scratchgen vs PyTorch CPU, for PixelCNN, Gated PixelCNN and DCGAN (issue #7).

Models (the torch twins in bench/torch_pixelcnn.py and bench/torch_dcgan.py start from the SAME weights):
  pixelcnn  PixelCNN(1, channels=64, blocks=7, out_channels=64)    examples/pixelcnn_mnist.py defaults
  gated     GatedPixelCNN(channels=32, layers=8, out_channels=64)  examples/pixelcnn_mnist.py --model gated
            one step = zero_grad + nll(x).mean() (BCE-with-logits summed over 784 pixels) + backward +
            Adam(1e-3) step + loss.item(); binarized MNIST, batch 64, 28x28, float32
  dcgan     DCGANGenerator(100, 64) + DCGANDiscriminator(64) (scratchgen/models/dcgan.py), MNIST in
            [-1, 1], batch 64; one step = one iteration of scratchgen.models.gan.train_step: a D step
            (G(z) without grad, BCE real/fake, backward, Adam(2e-4, (0.5, 0.999))) then a G step (fresh
            z, non-saturating loss through the frozen D, backward, Adam)

Steps are interleaved one by one, ours then torch, round-robin (bench/common.py:compare), so load
drifts on the shared machine hit both alike; medians (and IQRs) are reported; ratio = ours / torch.
Batches cycle through real training batches (a shuffled epoch's first ones).

Each thread count runs in its own subprocess with OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS set before
numpy/numba/torch/scratchgen load, threadpoolctl's limit on the BLAS pools, and torch.set_num_threads(n).
A 'p' suffix (e.g. --threads 2p) also sets OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4
(idle pool threads sleep instead of spinning: both frameworks share the process).

    SCRATCHGEN_DATA=/work/shared/data python bench/bench_pixelcnn.py --threads 1,2 --md bench/results_pixelcnn.md
    python bench/bench_pixelcnn.py --threads 1 --models gated --steps 3 --warmup 1       # smoke test
    python bench/bench_pixelcnn.py --threads 1 --models pixelcnn --profile 5             # where our time goes
    python bench/bench_pixelcnn.py --from-json a.json b.json --md bench/results_pixelcnn.md  # merge runs

--profile S: pyinstrument over S of our steps per model (self time per function, grouped), and
torch.profiler's op table over S torch steps, printed and (with --md) appended to the report.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (imports nothing heavy)

RESULT_TAG = "RESULT_JSON:"
PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}
KEEP_MARKER = "<!-- hand-written analysis below: kept when bench_pixelcnn.py rewrites this file -->"
SIZES = {"pixelcnn": dict(channels=64, blocks=7, out_channels=64),
         "gated": dict(channels=32, blocks=8, out_channels=64),
         "dcgan": dict(latent_dim=100, channels=64)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma list of thread counts, one subprocess each")
    p.add_argument("--models", default="pixelcnn,gated,dcgan")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per framework and model (PixelCNNs)")
    p.add_argument("--dcgan-steps", type=int, default=30, help="timed DCGAN steps per framework")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per framework first")
    p.add_argument("--profile", type=int, default=0, metavar="S", help="also profile S steps per model")
    p.add_argument("--md", default=None, help="write the markdown report here")
    p.add_argument("--json", default=None, help="write the raw results here")
    p.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                   help="no timing: merge earlier --json outputs (e.g. one per model or thread count) into --md")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the steps (child process) ----------------------------------------------------------------------
def _batches(kind, batch, n, seed=0):
    import numpy as np
    from scratchgen.data import load_binarized_mnist, load_mnist
    if kind == "dcgan":
        x = load_mnist("train")[0].reshape(-1, 784).astype(np.float32) / 255.0 * 2 - 1
    else:
        x = load_binarized_mnist("train").reshape(-1, 1, 28, 28)
    order = np.random.default_rng([seed, 0]).permutation(len(x))   # as DataLoader(seed=0), epoch 0
    return [np.array(x[order[i * batch:(i + 1) * batch]]) for i in range(n)]


def make_steps(kind, batch, seed=0):
    """{'scratchgen': step(), 'torch': step()} on identical models, cycling through the same batches."""
    import numpy as np
    import torch
    import scratchgen as sg
    batches = _batches(kind, batch, 8, seed)
    state = {"scratchgen": 0, "torch": 0}

    def next_batch(who):
        state[who] += 1
        return batches[state[who] % len(batches)]

    if kind in ("pixelcnn", "gated"):
        import torch_pixelcnn as tp
        size = SIZES[kind]
        sgm, tm = tp.pair(kind, size["channels"], size["blocks"], size["out_channels"], seed)
        sg_opt = sg.optim.Adam(sgm.parameters(), lr=1e-3)
        t_opt = torch.optim.Adam(tm.parameters(), lr=1e-3)

        def ours():
            x = sg.tensor(next_batch("scratchgen"))
            sg_opt.zero_grad()
            loss = sgm.nll(x).mean()
            loss.backward()
            sg_opt.step()
            return float(loss.item())

        def theirs():
            x = torch.from_numpy(next_batch("torch"))
            t_opt.zero_grad()
            loss = tm.nll(x).mean()
            loss.backward()
            t_opt.step()
            return float(loss.item())

        params = sum(q.numel() for q in tm.parameters())
    else:
        import torch_dcgan as td
        from scratchgen.models.gan import GAN, AdversarialOptimizer, train_step
        (G, D), (tG, tD) = td.dcgan_pair(seed=seed)
        model = GAN(G, D, 100)
        opt = AdversarialOptimizer(sg.optim.Adam(G.parameters(), **td.ADAM), sg.optim.Adam(D.parameters(), **td.ADAM))
        t_g, t_d = torch.optim.Adam(tG.parameters(), **td.ADAM), torch.optim.Adam(tD.parameters(), **td.ADAM)
        rng = np.random.default_rng(seed + 1)

        def ours():   # scratchgen's own training iteration (noise from its global generator)
            return train_step(model, opt, sg.tensor(next_batch("scratchgen")))["g_loss"]

        def theirs():
            real = torch.from_numpy(next_batch("torch"))
            z_d, z_g = (torch.from_numpy(rng.standard_normal((batch, 100)).astype(np.float32)) for _ in range(2))
            return td.torch_train_step(tG, tD, t_g, t_d, real, z_d, z_g)["g_loss"]

        params = sum(q.numel() for q in tG.parameters()) + sum(q.numel() for q in tD.parameters())
    return {"scratchgen": ours, "torch": theirs}, params


def profile_ours(fn, steps, top=25):
    """pyinstrument over `steps` calls: (seconds per step, [(seconds per step, function), ...], text tree).

    Self time is charged to the nearest enclosing function of this repository (scratchgen/, kernels/,
    bench/): time inside NumPy or a ufunc called by scratchgen/ops/elementwise.py:add counts as that
    op's, so the table reads as time per scratchgen op / kernel."""
    from pyinstrument import Profiler
    prof = Profiler(interval=0.001)
    prof.start()
    for _ in range(steps):
        fn()
    prof.stop()
    session = prof.last_session
    selfs = {}

    def walk(frame, owner):
        if frame is None or frame.is_synthetic:
            return
        path = frame.file_path or ""
        if path.startswith(common.REPO_ROOT):
            owner = f"{os.path.relpath(path, common.REPO_ROOT)}:{frame.function}"
        elif owner is None:
            owner = f"{os.path.basename(path) or '?'}:{frame.function}"
        selfs[owner] = selfs.get(owner, 0.0) + frame.total_self_time
        for child in frame.children:
            walk(child, owner)

    walk(session.root_frame(), None)
    total = session.duration / steps
    table = sorted(((t / steps, name) for name, t in selfs.items()), reverse=True)[:top]
    text = prof.output_text(unicode=False, color=False, show_all=False)
    return total, table, text


def profile_torch(fn, steps, top=15):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def child(args):
    spec = args.threads
    if spec.endswith("p"):
        os.environ.update(PASSIVE_ENV)
    n = int(spec.rstrip("p"))
    common.pin_threads(n)                        # env vars before numpy / numba / torch load
    import numpy  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits
    threadpool_limits(n)                         # and the BLAS pools, for ours
    common.pin_torch(n)                          # torch.set_num_threads(n)
    import numba
    out = {"threads": spec, "numba_threads": numba.config.NUMBA_NUM_THREADS, "torch_threads": torch.get_num_threads(),
           "blas": common.blas_threads(), "machine": common.machine_info(), "models": {}}
    for kind in args.models.split(","):
        fns, params = make_steps(kind, args.batch_size)
        repeat = args.dcgan_steps if kind == "dcgan" else args.steps
        load0 = common.loadavg()
        t0 = time.perf_counter()
        timings = common.compare(fns, warmup=args.warmup, repeat=repeat)
        res = {"parameters": params, "steps": repeat, "wall_s": round(time.perf_counter() - t0, 1),
               "loadavg": [load0, common.loadavg()]}
        for who, t in timings.items():
            s = sorted(t.samples)
            res[who] = {"median_s": t.median, "iqr_s": t.iqr, "min_s": s[0], "samples": t.samples}
        res["ratio_median"] = res["scratchgen"]["median_s"] / res["torch"]["median_s"]
        res["ratio_min"] = res["scratchgen"]["min_s"] / res["torch"]["min_s"]
        print(f"[{spec} threads] {kind}: ours {res['scratchgen']['median_s'] * 1e3:.1f} ms "
              f"(iqr {res['scratchgen']['iqr_s'] * 1e3:.1f}), torch {res['torch']['median_s'] * 1e3:.1f} ms "
              f"(iqr {res['torch']['iqr_s'] * 1e3:.1f}); ratio ours/torch {res['ratio_median']:.2f} "
              f"(of minimums {res['ratio_min']:.2f}); load {load0}", file=sys.stderr, flush=True)
        if args.profile:
            total, table, text = profile_ours(fns["scratchgen"], args.profile)
            res["profile"] = {"step_s": total, "self_time": table, "tree": text,
                              "torch_table": profile_torch(fns["torch"], args.profile)}
            print(f"--- pyinstrument, ours, {kind}: {total * 1e3:.0f} ms/step; self time per step:", file=sys.stderr)
            for t, name in table:
                print(f"  {t * 1e3:8.1f} ms  {name}", file=sys.stderr)
            print(text, file=sys.stderr)
            print(f"--- torch.profiler, {kind}:\n{res['profile']['torch_table']}", file=sys.stderr, flush=True)
        out["models"][kind] = res
    print(RESULT_TAG + json.dumps(out), flush=True)


# -- parent: one subprocess per thread count, then the report -----------------------------------------
def run_children(args):
    results = []
    for spec in args.threads.split(","):
        env = dict(os.environ)
        n = spec.rstrip("p")
        for var in common._THREAD_VARS:
            env[var] = n
        if spec.endswith("p"):
            env.update(PASSIVE_ENV)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--threads", spec, "--models", args.models,
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--dcgan-steps",
               str(args.dcgan_steps), "--warmup", str(args.warmup), "--profile", str(args.profile)]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            raise SystemExit(f"child for {spec} threads failed ({proc.returncode})")
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)][-1]
        results.append(json.loads(line[len(RESULT_TAG):]))
    return results


def merge(results):
    """One entry per thread spec, the models of every run with that spec together. When two runs timed
    the same model, the one with more timed steps gives the timings (later runs win ties), and a
    profile from either is kept."""
    by_spec = {}
    for r in results:
        into = by_spec.setdefault(r["threads"], dict(r, models={}))["models"]
        for kind, res in r["models"].items():
            old = into.get(kind)
            if old is None or res["steps"] >= old["steps"]:
                keep = dict(res)
                if old is not None and "profile" in old and "profile" not in res:
                    keep["profile"] = old["profile"]
            else:
                keep = dict(old)
                if "profile" in res:
                    keep["profile"] = res["profile"]
            into[kind] = keep
    return list(by_spec.values())


def report(results, argv):
    m = results[0]["machine"]
    lines = ["# Training-step time: scratchgen vs PyTorch CPU -- PixelCNN, Gated PixelCNN, DCGAN (issue #7)", "",
             (f"Assembled by `python bench/bench_pixelcnn.py {' '.join(argv)}` from earlier runs (their commands "
              f"and dates are listed under the table and in the notes)." if "--from-json" in argv else
              f"Generated by `python bench/bench_pixelcnn.py {' '.join(argv)}` on {m['date']}."), "",
             f"Machine: {m['cpu']}, {m['nproc']} CPUs (shared with other jobs: load averages below), "
             f"{m['platform']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; git {m['git']}.",
             "",
             "One step = forward + backward + Adam step + loss.item() at batch 64 on 28x28 (DCGAN: one D step "
             "and one G step). Ours and torch interleaved step by step; medians of the samples; "
             "ratio = ours / torch (lower is better for us; < 1 means faster than torch).", ""]
    rows = []
    for r in results:
        for kind, res in r["models"].items():
            s, t = res["scratchgen"], res["torch"]
            rows.append([kind, r["threads"], res["parameters"], res["steps"], f"{s['median_s'] * 1e3:.1f}",
                         f"{s['iqr_s'] * 1e3:.1f}", f"{t['median_s'] * 1e3:.1f}", f"{t['iqr_s'] * 1e3:.1f}",
                         f"**{res['ratio_median']:.2f}**", f"{res['ratio_min']:.2f}",
                         " / ".join(common.fmt(v, 1) for v in res["loadavg"])])
    lines += [common.md_table(["model", "threads", "params", "steps", "ours ms (median)", "ours IQR",
                               "torch ms (median)", "torch IQR", "ours/torch", "ratio of minimums",
                               "load before / after"], rows), ""]
    for r in results:
        lines.append(f"- {r['threads']} threads (run {r['machine']['date']}): numba {r['numba_threads']}, "
                     f"torch {r['torch_threads']}, BLAS pools {r['blas']}")
    lines.append("")
    for r in results:
        for kind, res in r["models"].items():
            if "profile" not in res:
                continue
            p = res["profile"]
            lines += [f"## Profile: {kind}, {r['threads']} thread(s)", "",
                      f"pyinstrument, ours: {p['step_s'] * 1e3:.0f} ms per step (profiled); self time per step:", "",
                      common.md_table(["ms / step", "function"], [[f"{t * 1e3:.1f}", f"`{n}`"]
                                                                  for t, n in p["self_time"]], align="rl"), "",
                      "torch.profiler, torch (self CPU time):", "", "```", p["torch_table"], "```", ""]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.from_json:
        results = merge([r for path in args.from_json for r in json.load(open(path))])
    else:
        results = run_children(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    text = report(results, argv)
    print(text)
    if args.md:
        kept = ""
        if os.path.exists(args.md):
            old = open(args.md).read()
            if KEEP_MARKER in old:
                kept = old[old.index(KEEP_MARKER):]
        with open(args.md, "w") as f:
            f.write(text + "\n\n" + (kept or KEEP_MARKER + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
