#!/usr/bin/env python
"""Seconds per training epoch: scratchgen vs an equivalent PyTorch CPU implementation (issues 4-6).

Models (bench/torch_models.py, torch_vae.py and torch_gan.py hold the torch twins, loaded with the
SAME initial weights/masks):
  MADE-500   784-500-784, one mask, natural ordering; binarized MNIST (Larochelle), batch 100;
             loss = BCE-with-logits summed over pixels, mean over the batch; Adam(lr 1e-3).
             Epoch = 500 steps (50k train split).
  NICE       4 additive couplings x (5 x 1000 ReLU), logistic prior, diagonal scale; dequantized
             MNIST, batch 200; Adam(1e-3, betas (0.9, 0.99), eps 1e-4). Epoch = 250 steps.
  VAE        784-500-500-50, ReLU, Bernoulli decoder, analytic KL; binarized MNIST, batch 100, Adam(1e-3);
             eps from one NumPy stream for both. Epoch = 500 steps.
  GAN        MLP G 64-256-256-784 / D 784-256-256-1; MNIST in [-1, 1], batch 64; one step = one D step +
             one G step (Algorithm 1), Adam(2e-4, (0.5, 0.999)). Epoch = 782 steps.
  WGAN-GP    the same MLPs, batch 320; one step = 5 critic steps with the gradient penalty (64 rows each)
             + one G step, Adam(1e-4, (0.5, 0.9)). Epoch = 157 steps.
  gp         the WGAN-GP critic step alone (64 real + 64 fixed fakes), with and without the penalty, for
             both frameworks: the cost of double backprop, ours (sg.grad(create_graph=True)) vs torch's.

One training step = (framework tensor from the NumPy batch) + zero_grad + forward + backward +
Adam step + loss.item(), float32. Batches come from the real data (a shuffled epoch's first
batches; NICE batches are dequantized once beforehand, so the noise draw is not timed for either).
scratchgen and torch steps are interleaved one step each, round-robin (bench/common.py:compare),
so machine load drifts hit both alike; medians and minimums are reported, seconds/epoch = step
median x steps per epoch, and ratio = ours / torch (target <= 1.0).

Optionally (--fit-epochs K): K real MADE epochs through scratchgen.train.fit (DataLoader, shuffle,
no validation, no progress bar) vs a plain torch loop over the same data, alternated epoch by epoch.
Optionally (--profile-steps S): cProfile of S scratchgen steps per model (top functions), plus the
torch profiler's op table for S torch steps, and the time of the step's GEMMs alone in NumPy
(OpenBLAS) vs torch (MKL) -- where the time goes.

    SCRATCHGEN_DATA=/work/shared/data python bench/bench_models.py --threads 1,2 --md bench/results_models.md
    SCRATCHGEN_DATA=/work/shared/data python bench/bench_models.py --threads 1,2 --models vae,gan,wgan_gp,gp \
        --md bench/results_models.md
    python bench/bench_models.py --threads 1 --quick               # smoke test

--md FILE writes the report as a block named after --models (made,nice / vae,gan,wgan_gp,gp / ...): a
later run with the same --models replaces that block in place; other blocks and hand-written text stay.

Each thread count runs in its own subprocess with OMP/OPENBLAS/MKL/NUMEXPR/NUMBA_NUM_THREADS set
before numpy, numba, torch or scratchgen are imported, and torch.set_num_threads(n).
Thread spec suffix 'p' (e.g. 2p) also sets OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4
(idle pool threads sleep instead of spinning; see PASSIVE_ENV).
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (no numpy imported yet)

RESULT_TAG = "RESULT_JSON:"
KEEP_MARKER = "<!-- hand-written analysis below: kept when bench_models.py rewrites this file -->"
# torch: torch.optim.Adam with its CPU default (the single-tensor for-loop implementation);
# torch_fused: Adam(fused=True), torch's fastest CPU Adam (one fused kernel over all parameters).
CONTENDERS = ("scratchgen", "torch", "torch_fused")
# Thread spec suffix 'p': idle pool threads sleep instead of spinning. Both frameworks share the
# process (interleaved steps), so with spinning pools one framework's idle workers burn a core while
# the other computes: libgomp (torch, numba) spins unless OMP_WAIT_POLICY=PASSIVE, and OpenBLAS
# (numpy) spins ~2^28 cycles after each call unless OPENBLAS_THREAD_TIMEOUT is small (4 = 2^4 cycles).
PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}
# Steps per epoch on the 50k training split (the last, partial batch counted as a full one) and rows per step.
STEPS_PER_EPOCH = {"made": 500, "nice": 250, "vae": 500, "gan": 782, "wgan_gp": 157}
BATCH = {"made": 100, "nice": 200, "vae": 100, "gan": 64, "wgan_gp": 320}
STEP_DEFINITION = {
    "made": "MADE-500 784-500-784, binarized MNIST, batch 100, Adam(1e-3)",
    "nice": "NICE 4 x (5 x 1000), dequantized MNIST, batch 200, Adam(1e-3, (0.9, 0.99), 1e-4)",
    "vae": "VAE 784-500-500-50 (ReLU, Bernoulli decoder, analytic KL), binarized MNIST, batch 100, Adam(1e-3); "
           "the step draws eps ~ N(0, I) (NumPy, the same stream for both) and reads the batch means of the loss, "
           "KL and reconstruction terms as floats, as the training loops log them",
    "gan": "MLP GAN (G 64-256-256-784, D 784-256-256-1), MNIST in [-1, 1], batch 64: one iteration of Algorithm 1 = "
           "one D step (z, G(z) under no_grad, BCE on real and fake, Adam) + one G step (fresh z, non-saturating "
           "loss through the frozen D, Adam), Adam(2e-4, (0.5, 0.999)); `scratchgen.models.gan.train_step` vs "
           "`bench/torch_gan.py:train_step`",
    "wgan_gp": "WGAN-GP, same MLPs, batch 320: one generator iteration = 5 critic steps on 64-row chunks (each with "
               "the gradient penalty by double backprop) + one G step, Adam(1e-4, (0.5, 0.9))",
}
# The WGAN-GP critic step with and without the gradient penalty ('gp' in --models).
GP_VARIANTS = ("gp", "no_gp")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1", help="thread count or comma list, one subprocess each (default 1)")
    p.add_argument("--models", default="made,nice",
                   help="comma list of made,nice,vae,gan,wgan_gp,gp (default made,nice); gp = the WGAN-GP "
                        "critic step with and without the gradient penalty")
    p.add_argument("--made-steps", type=int, default=100, help="timed MADE steps per framework (default 100)")
    p.add_argument("--nice-steps", type=int, default=50, help="timed NICE steps per framework (default 50)")
    p.add_argument("--vae-steps", type=int, default=100, help="timed VAE steps per framework (default 100)")
    p.add_argument("--gan-steps", type=int, default=200, help="timed GAN iterations per framework (default 200)")
    p.add_argument("--wgan-gp-steps", type=int, default=40,
                   help="timed WGAN-GP generator iterations per framework (default 40)")
    p.add_argument("--gp-steps", type=int, default=200, help="timed critic steps per variant (default 200)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per framework first (default 5)")
    p.add_argument("--fit-epochs", type=int, default=0,
                   help="also time this many real MADE epochs through scratchgen.train.fit vs a torch loop")
    p.add_argument("--profile-steps", type=int, default=0, help="also profile this many steps per model")
    p.add_argument("--gemm", action="store_true",
                   help="also time each model step's GEMMs alone, NumPy/OpenBLAS vs torch/MKL "
                        "(implied by --profile-steps)")
    p.add_argument("--md", default=None, help="write the markdown report here")
    p.add_argument("--json", default=None, help="write the raw results here")
    p.add_argument("--quick", action="store_true", help="few steps (smoke test)")
    p.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                   help="no timing: merge the results of earlier --json runs (one per thread count) into --md")
    p.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = p.parse_args(argv)
    if args.quick:
        args.made_steps, args.nice_steps, args.warmup = 10, 3, 1
        args.vae_steps, args.gan_steps, args.wgan_gp_steps, args.gp_steps = 10, 10, 3, 10
    return args


ARGS = parse_args()
THREADS = ARGS.threads.split(",")
IN_PROCESS = len(THREADS) == 1 and (ARGS.emit_json or not ARGS.md) and not ARGS.from_json
if IN_PROCESS:
    if "p" in THREADS[0]:
        os.environ.update(PASSIVE_ENV)  # read when the OpenMP / OpenBLAS runtimes load
    common.pin_threads(int(THREADS[0].rstrip("p")))  # before numpy / numba / torch / scratchgen


def stats(t):
    s = sorted(t.samples)
    return {"median_s": t.median, "iqr_s": t.iqr, "min_s": s[0], "mean_s": sum(s) / len(s), "n": len(s)}


# -- the steps --------------------------------------------------------------------------------------
def make_steps(which, n_batches, seed=0):
    """{'scratchgen': step(), 'torch': step()} on identical models and the same batch sequence."""
    if which == "vae":
        return make_vae_steps(n_batches, seed)
    if which in ("gan", "wgan_gp"):
        return make_gan_steps(which, n_batches, seed)
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.data import dequantize, load_binarized_mnist, load_mnist
    import torch_models as tm

    sg.manual_seed(seed)
    order_rng = np.random.default_rng([seed, 0])  # as DataLoader(seed=0), epoch 0
    if which == "made":
        data = load_binarized_mnist("train")
        order = order_rng.permutation(len(data))
        batches = [np.array(data[order[i * 100:(i + 1) * 100]]) for i in range(n_batches)]
        sg_model, t_model = tm.made_pair(seed)
        adam = tm.MADE_ADAM
        sg_loss = lambda x: -sg_model.log_prob_one_mask(x).mean()  # noqa: E731
    else:
        data = load_mnist("train")[0].reshape(-1, 784)
        order = order_rng.permutation(len(data))
        noise = np.random.default_rng(seed + 1)
        batches = [dequantize(data[order[i * 200:(i + 1) * 200]], noise) for i in range(n_batches)]
        sg_model, t_model = tm.nice_pair()
        adam = tm.NICE_ADAM
        sg_loss = lambda x: -sg_model.log_prob(x).mean()  # noqa: E731
    sg_opt = sg.optim.Adam(sg_model.parameters(), **adam)
    sg_model.train()
    state = {name: 0 for name in CONTENDERS}
    losses = {name: [] for name in CONTENDERS}

    def sg_step():
        xb = batches[state["scratchgen"] % n_batches]
        state["scratchgen"] += 1
        sg_opt.zero_grad()
        loss = sg_loss(sg.tensor(xb))
        loss.backward()
        sg_opt.step()
        losses["scratchgen"].append(loss.item())

    def torch_step(name, model, opt):
        def step():
            xb = batches[state[name] % n_batches]
            state[name] += 1
            opt.zero_grad()
            loss = model.loss(torch.from_numpy(xb))
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
        return step

    fns = {"scratchgen": sg_step}
    for name in CONTENDERS[1:]:
        # every torch contender gets its own copy of the same initial weights
        model = t_model if name == "torch" else copy.deepcopy(t_model)
        model.train()
        opt = torch.optim.Adam(model.parameters(), **adam, fused=(name == "torch_fused") or None)
        fns[name] = torch_step(name, model, opt)
    return fns, losses


def shuffled_batches(data, batch, n_batches, seed=0):
    """The first n_batches batches of DataLoader(data, batch, shuffle=True, seed=seed), epoch 0."""
    import numpy as np
    order = np.random.default_rng([seed, 0]).permutation(len(data))
    return [np.array(data[order[i * batch:(i + 1) * batch]]) for i in range(n_batches)]


def make_vae_steps(n_batches, seed=0):
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.data import load_binarized_mnist
    import torch_vae as tv

    batches = shuffled_batches(load_binarized_mnist("train"), BATCH["vae"], n_batches, seed)
    sg.manual_seed(seed)
    sg_model, t_model = tv.vae_pair()
    sg_opt = sg.optim.Adam(sg_model.parameters(), **tv.VAE_ADAM)
    sg.manual_seed(seed + 1)   # eps: scratchgen's global stream; each torch contender a copy of it
    state = {name: 0 for name in CONTENDERS}
    losses = {name: [] for name in CONTENDERS}

    def sg_step():
        xb = batches[state["scratchgen"] % n_batches]
        state["scratchgen"] += 1
        sg_opt.zero_grad()
        out = sg_model.training_loss(sg.tensor(xb))
        out["loss"].backward()
        sg_opt.step()
        losses["scratchgen"].append(out["loss"].item())
        out["kl"].item(), out["rec"].item()

    def torch_step(name, model, opt):
        rng = np.random.default_rng(seed + 1)

        def step():
            xb = batches[state[name] % n_batches]
            state[name] += 1
            opt.zero_grad()
            elbo, rec, kl = model.elbo(torch.from_numpy(xb), tv.normal(rng, (len(xb), model.latent_dim)))
            loss = -elbo.mean()
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
            kl.detach().mean().item(), rec.detach().mean().item()
        return step

    fns = {"scratchgen": sg_step}
    for name in CONTENDERS[1:]:
        model = t_model if name == "torch" else copy.deepcopy(t_model)
        fns[name] = torch_step(name, model, torch.optim.Adam(model.parameters(), **tv.VAE_ADAM,
                                                             fused=(name == "torch_fused") or None))
    return fns, losses


def make_gan_steps(objective, n_batches, seed=0):
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.models.gan import AdversarialOptimizer, train_step
    import torch_gan as tg

    batches = shuffled_batches(tg.mnist("train")[0], BATCH[objective], n_batches, seed)
    recipe = tg.RECIPES[objective]
    sg.manual_seed(seed)
    sg_model, t_model = tg.gan_pair(objective)
    sg_opt = AdversarialOptimizer(*(sg.optim.Adam(m.parameters(), lr=recipe["lr"], betas=recipe["betas"])
                                    for m in (sg_model.generator, sg_model.discriminator)))
    sg.manual_seed(seed + 1)   # z and eps: scratchgen's global stream; each torch contender a copy of it
    state = {name: 0 for name in CONTENDERS}
    losses = {name: [] for name in CONTENDERS}

    def sg_step():
        xb = batches[state["scratchgen"] % n_batches]
        state["scratchgen"] += 1
        losses["scratchgen"].append(train_step(sg_model, sg_opt, sg.tensor(xb))["g_loss"])

    def torch_step(name, model, fused):
        rng = np.random.default_rng(seed + 1)
        g_opt, d_opt = tg.make_optimizers(model, fused)

        def step():
            xb = batches[state[name] % n_batches]
            state[name] += 1
            losses[name].append(tg.train_step(model, g_opt, d_opt, torch.from_numpy(xb), rng)["g_loss"])
        return step

    fns = {"scratchgen": sg_step}
    for name in CONTENDERS[1:]:
        model = t_model if name == "torch" else copy.deepcopy(t_model)
        fns[name] = torch_step(name, model, (name == "torch_fused") or None)
    return fns, losses


def time_gp(steps, warmup, seed=0):
    """The WGAN-GP critic step on 64 real and 64 fixed generated digits, with and without the penalty:
    zero_grad + critic on real and fake (+ penalty: fresh epsilon, critic on x-hat, its gradient w.r.t.
    x-hat with create_graph, the penalty) + backward + Adam step + the logged floats. Six contenders
    (scratchgen / torch / torch fused Adam, each with and without the penalty), interleaved."""
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.models.wgan import WGAN
    import torch_gan as tg

    recipe = tg.RECIPES["wgan_gp"]
    real = shuffled_batches(tg.mnist("train")[0], 64, 1, seed)[0]
    sg.manual_seed(seed)
    sg_model, t_model = tg.gan_pair("wgan_gp")
    z = np.random.default_rng(seed + 2).standard_normal((64, sg_model.latent_dim), dtype=np.float32)
    with torch.no_grad():
        fake = t_model.generator(torch.from_numpy(z)).numpy()
    fns, losses = {}, {}

    def sg_step(name, with_gp):
        model = copy.deepcopy(sg_model)
        opt = sg.optim.Adam(model.discriminator.parameters(), lr=recipe["lr"], betas=recipe["betas"])
        loss_fn = model.discriminator_loss if with_gp else (lambda x, f: WGAN.discriminator_loss(model, x, f))
        x, f = sg.tensor(real), sg.tensor(fake)

        def step():
            opt.zero_grad()
            loss, _ = loss_fn(x, f)   # draws epsilon from scratchgen's global generator
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
        return step

    def torch_step(name, with_gp, fused):
        model = copy.deepcopy(t_model)
        _, opt = tg.make_optimizers(model, fused)
        model.objective = "wgan_gp" if with_gp else "wgan"
        model.generator.requires_grad_(False)
        x, f = torch.from_numpy(real), torch.from_numpy(fake)
        rng = np.random.default_rng(seed + 1)

        def step():
            eps = torch.from_numpy(rng.random((64, 1), dtype=np.float32)) if with_gp else None
            opt.zero_grad()
            loss, _ = model.discriminator_loss(x, f, eps)
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
        return step

    sg.manual_seed(seed + 1)
    for variant in GP_VARIANTS:
        with_gp = variant == "gp"
        for name in CONTENDERS:
            key = f"{name}/{variant}"
            losses[key] = []
            fns[key] = sg_step(key, with_gp) if name == "scratchgen" else \
                torch_step(key, with_gp, (name == "torch_fused") or None)
    t = common.compare(fns, warmup=warmup, repeat=steps, number=1)
    out = {k: stats(v) for k, v in t.items()}
    out["loss_max_rel_diff"] = {
        f"{name}/{v}": max(abs(a - b) / abs(b) for a, b in zip(losses[f"scratchgen/{v}"], losses[f"{name}/{v}"]))
        for name in CONTENDERS[1:] for v in GP_VARIANTS}
    out["steps_compared"] = len(losses["scratchgen/gp"])
    return out


def time_model(which, steps, warmup):
    fns, losses = make_steps(which, n_batches=min(STEPS_PER_EPOCH[which], steps + warmup))
    t = common.compare(fns, warmup=warmup, repeat=steps, number=1)
    # Same weights, same batches in the same order: the loss sequences must agree.
    a = losses["scratchgen"]
    out = {k: stats(v) for k, v in t.items()}
    out["loss_max_rel_diff"] = {k: max(abs(x - y) / abs(y) for x, y in zip(a, losses[k])) for k in CONTENDERS[1:]}
    out["steps_compared"] = len(a)
    out["loss_first_last"] = {k: [v[0], v[-1]] for k, v in losses.items()}
    return out


# -- real MADE epochs: fit vs a torch loop ----------------------------------------------------------
def time_fit_epochs(epochs, seed=0):
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.data import DataLoader, load_binarized_mnist
    from scratchgen.train import fit
    import torch_models as tm

    train = load_binarized_mnist("train")
    sg.manual_seed(seed)
    sg_model, t_model = tm.made_pair(seed)
    sg_opt = sg.optim.Adam(sg_model.parameters(), **tm.MADE_ADAM)
    loader = DataLoader((train,), batch_size=100, shuffle=True, seed=seed)

    def loss_fn(model, batch):
        return -model.log_prob_one_mask(batch[0]).mean()

    def sg_epoch():
        return fit(sg_model, sg_opt, loader, loss_fn, 1, progress=False, log=None).history[0]["train_loss"]

    def torch_loop(model, opt):
        count = [0]

        def epoch():
            model.train()
            order = np.random.default_rng([seed, count[0]]).permutation(len(train))  # as the DataLoader
            count[0] += 1
            total = 0.0
            for b in range(0, len(train), 100):
                x = torch.from_numpy(train[order[b:b + 100]])
                opt.zero_grad()
                loss = model.loss(x)
                loss.backward()
                opt.step()
                total += loss.item() * len(x)
            return total / len(train)
        return epoch

    t_fused = copy.deepcopy(t_model)
    fns = {"scratchgen": sg_epoch,
           "torch": torch_loop(t_model, torch.optim.Adam(t_model.parameters(), **tm.MADE_ADAM)),
           "torch_fused": torch_loop(t_fused, torch.optim.Adam(t_fused.parameters(), **tm.MADE_ADAM, fused=True))}
    times = {k: [] for k in fns}
    train_loss = {k: [] for k in fns}
    for _ in range(epochs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            train_loss[name].append(fn())
            times[name].append(time.perf_counter() - t0)
    return {k: {"epochs_s": v, "median_s": statistics.median(v), "min_s": min(v), "train_loss": train_loss[k]}
            for k, v in times.items()}


# -- where the time goes ----------------------------------------------------------------------------
def gemm_shapes(which):
    """(kind, batch, in, out) of every matmul of one training step, as scratchgen.nn.functional.linear does
    them: forward x @ W.T, backward dX = g @ W (skipped where x needs no grad: the data), dW = g.T @ x."""
    if which == "made":
        layers, n = [(784, 500), (500, 784)], 100
    else:
        layers, n = ([(392, 1000)] + [(1000, 1000)] * 4 + [(1000, 392)]) * 4, 200
    shapes = []
    for i, (fin, fout) in enumerate(layers):
        shapes += [("fwd", n, fin, fout), ("dW", n, fin, fout)] + ([("dX", n, fin, fout)] if i else [])
    return shapes


def time_gemms(which, repeat=15):
    """The step's matmuls alone, with the engine's operand layouts: NumPy (OpenBLAS, what the engine
    calls) vs torch (MKL) on the same arrays, interleaved."""
    import numpy as np
    import torch
    rng = np.random.default_rng(0)
    ops = []
    for kind, n, fin, fout in gemm_shapes(which):
        x = rng.standard_normal((n, fin)).astype(np.float32)
        w = rng.standard_normal((fout, fin)).astype(np.float32)
        g = rng.standard_normal((n, fout)).astype(np.float32)
        ops.append((kind, x, w, g, torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(g)))

    def run(framework):
        def all_gemms():
            for kind, x, w, g, tx, tw, tg in ops:
                if framework == "torch":
                    x, w, g = tx, tw, tg
                if kind == "fwd":
                    x @ w.T
                elif kind == "dX":
                    g @ w
                else:
                    g.T @ x
        return all_gemms

    t = common.compare({"numpy": run("numpy"), "torch": run("torch")}, warmup=2, repeat=repeat)
    return {k: stats(v) for k, v in t.items()}


def profile_scratchgen(which, steps, top=25):
    import cProfile
    import pstats
    fns, _ = make_steps(which, n_batches=steps + 3)
    for _ in range(3):
        fns["scratchgen"]()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(steps):
        fns["scratchgen"]()
    prof.disable()
    wall = (time.perf_counter() - t0) / steps
    st = pstats.Stats(prof)
    total = st.total_tt / steps
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
        where = os.path.relpath(file, common.REPO_ROOT) if file.startswith(common.REPO_ROOT) else os.path.basename(file)
        rows.append({"func": f"{where}:{line}({func})" if line else func,
                     "calls_per_step": nc / steps, "tottime_ms": tt / steps * 1e3, "cumtime_ms": ct / steps * 1e3})
    by_tot = sorted(rows, key=lambda r: -r["tottime_ms"])[:top]
    by_cum = sorted([r for r in rows if "scratchgen" in r["func"] or "kernels" in r["func"]],
                    key=lambda r: -r["cumtime_ms"])[:top]
    return {"steps": steps, "wall_ms_per_step_profiled": wall * 1e3, "profiled_total_ms": total * 1e3,
            "by_tottime": by_tot, "by_cumtime": by_cum}


def profile_torch(which, steps, name="torch", top=15):
    import torch
    from torch.profiler import ProfilerActivity, profile
    fns, _ = make_steps(which, n_batches=steps + 3)
    for _ in range(3):
        fns[name]()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fns[name]()
    rows = []
    for e in prof.key_averages():
        rows.append({"op": e.key, "calls_per_step": e.count / steps,
                     "self_ms": e.self_cpu_time_total / steps / 1e3, "total_ms": e.cpu_time_total / steps / 1e3})
    rows.sort(key=lambda r: -r["self_ms"])
    return {"steps": steps, "torch_threads": torch.get_num_threads(), "by_self": rows[:top]}


# -- one thread count -------------------------------------------------------------------------------
def run_one(spec):
    n = int(spec.rstrip("p"))
    import numpy as np  # noqa: F401
    import torch
    common.pin_torch(n)
    import numba
    import scratchgen  # noqa: F401
    res = {"threads": spec, "load_before": common.loadavg(), "torch_threads": torch.get_num_threads(),
           "numba_threads": numba.config.NUMBA_NUM_THREADS, "blas": common.blas_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
           "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT", "default"), "models": {}}
    t0 = time.perf_counter()
    for which in ARGS.models.split(","):
        if which == "gp":
            res["gp"] = time_gp(ARGS.gp_steps, ARGS.warmup)
            res["gp"]["load_after"] = common.loadavg()
            print(f"[threads {spec}] gp: " + ", ".join(f"{k} {res['gp'][k]['median_s'] * 1e3:.2f} ms"
                                                       for k in res["gp"] if "/" in k), file=sys.stderr, flush=True)
            continue
        steps = getattr(ARGS, f"{which}_steps")
        res["models"][which] = time_model(which, steps, ARGS.warmup)
        res["models"][which]["load_after"] = common.loadavg()
        print(f"[threads {spec}] {which}: " + ", ".join(
            f"{k} {res['models'][which][k]['median_s'] * 1e3:.1f} ms (min {res['models'][which][k]['min_s'] * 1e3:.1f})"
            for k in CONTENDERS),
            file=sys.stderr, flush=True)
    if ARGS.fit_epochs:
        res["fit"] = time_fit_epochs(ARGS.fit_epochs)
        res["fit"]["load_after"] = common.loadavg()
    if ARGS.gemm or ARGS.profile_steps:
        res["gemm_only"] = {which: time_gemms(which, repeat=7 if which == "nice" else 30)
                            for which in ARGS.models.split(",") if which in ("made", "nice")}
        res["gemm_only"]["load_after"] = common.loadavg()
    if ARGS.profile_steps:
        res["profile"] = {}
        for which in (w for w in ARGS.models.split(",") if w != "gp"):
            steps = max(2, ARGS.profile_steps // (5 if which == "nice" else 1))
            res["profile"][which] = {"scratchgen": profile_scratchgen(which, steps),
                                     "torch": profile_torch(which, steps, "torch"),
                                     "torch_fused": profile_torch(which, steps, "torch_fused")}
    res["load_after"] = common.loadavg()
    res["elapsed_s"] = time.perf_counter() - t0
    return res


def run_subprocess(spec):
    env = dict(os.environ)
    n = spec.rstrip("p")
    for var in common._THREAD_VARS:
        env[var] = n
    if "p" in spec:
        env.update(PASSIVE_ENV)
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", spec, "--emit-json"]
    for flag in ("models", "made_steps", "nice_steps", "vae_steps", "gan_steps", "wgan_gp_steps", "gp_steps",
                 "warmup", "fit_epochs", "profile_steps"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(ARGS, flag))]
    cmd += ["--gemm"] if ARGS.gemm else []
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"child for threads={spec} failed ({out.returncode})")
    for line in out.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise SystemExit(f"child for threads={spec} printed no result")


# -- report -----------------------------------------------------------------------------------------
def ms(x):
    return f"{x * 1e3:.1f}"


LABEL = {"scratchgen": "scratchgen", "torch": "torch (default Adam)", "torch_fused": "torch (Adam fused=True)"}


def step_table(results):
    rows = []
    for r in results:
        for which, m in r["models"].items():
            spe = STEPS_PER_EPOCH[which]
            ours = m["scratchgen"]
            for name in CONTENDERS:
                t = m[name]
                ratio = "" if name == "scratchgen" else f"**{ours['median_s'] / t['median_s']:.2f}**"
                ratio_min = "" if name == "scratchgen" else f"{ours['min_s'] / t['min_s']:.2f}"
                diff = "" if name == "scratchgen" else f"{m['loss_max_rel_diff'][name]:.1e}"
                rows.append([r["threads"], f"{NAMES[which]} (batch {BATCH[which]})", LABEL[name],
                             f"{ms(t['median_s'])} ± {ms(t['iqr_s'])}", ms(t["min_s"]),
                             f"{t['median_s'] * spe:.2f}", f"{t['min_s'] * spe:.2f}", ratio, ratio_min,
                             str(m["steps_compared"]), diff])
    return common.md_table(
        ["threads", "model", "framework", "ms/step median ± IQR", "ms/step min", "s/epoch (median)",
         "s/epoch (min)", "ratio ours/this (median)", "ratio (min)", "steps run", "max rel. loss diff vs ours"],
        rows, align="lll" + "r" * 8)


def summary_table(results):
    rows = []
    for r in results:
        for which, m in r["models"].items():
            spe = STEPS_PER_EPOCH[which]
            o, t, f = m["scratchgen"], m["torch"], m["torch_fused"]
            rows.append([r["threads"], NAMES[which], f"{o['median_s'] * spe:.2f}", f"{t['median_s'] * spe:.2f}",
                         f"{f['median_s'] * spe:.2f}", f"**{o['median_s'] / t['median_s']:.2f}**",
                         f"**{o['median_s'] / f['median_s']:.2f}**",
                         f"{o['min_s'] / t['min_s']:.2f} / {o['min_s'] / f['min_s']:.2f}"])
    return common.md_table(["threads", "model", "scratchgen s/epoch", "torch s/epoch", "torch fused-Adam s/epoch",
                            "ratio vs torch", "ratio vs torch fused", "ratio of minimums (torch / fused)"], rows,
                           align="ll" + "r" * 6)


def fit_table(results):
    rows = []
    for r in results:
        f = r.get("fit")
        if not f:
            continue
        for name in CONTENDERS:
            t = f[name]
            ratio = "" if name == "scratchgen" else \
                f"**{f['scratchgen']['median_s'] / t['median_s']:.2f}** ({f['scratchgen']['min_s'] / t['min_s']:.2f})"
            rows.append([r["threads"], LABEL[name] + (" via `fit`" if name == "scratchgen" else " plain loop"),
                         " / ".join(f"{x:.2f}" for x in t["epochs_s"]), f"{t['median_s']:.2f}", f"{t['min_s']:.2f}",
                         ratio, " / ".join(f"{x:.3f}" for x in t["train_loss"])])
    if not rows:
        return None
    return common.md_table(["threads", "framework", "epoch times s", "median s", "min s",
                            "ratio ours/this median (min)", "train_loss per epoch"], rows, align="ll" + "r" * 5)


def gemm_table(results):
    rows = []
    for r in results:
        for which, g in (r.get("gemm_only") or {}).items():
            if which == "load_after":
                continue
            n, t = g["numpy"], g["torch"]
            rows.append([r["threads"], which.upper(), str(len(gemm_shapes(which))),
                         f"{ms(n['median_s'])} ± {ms(n['iqr_s'])}", ms(n["min_s"]),
                         f"{ms(t['median_s'])} ± {ms(t['iqr_s'])}", ms(t["min_s"]),
                         f"**{n['median_s'] / t['median_s']:.2f}**", f"{n['min_s'] / t['min_s']:.2f}",
                         f"{r['gemm_only']['load_after']:.2f}"])
    if not rows:
        return None
    return common.md_table(["threads", "model", "GEMMs/step", "NumPy (OpenBLAS) ms median ± IQR", "min",
                            "torch (MKL) ms median ± IQR", "min", "ratio (median)", "ratio (min)", "load after"],
                           rows, align="ll" + "r" * 8)


def profile_section(results):
    out = []
    for r in results:
        for which, p in (r.get("profile") or {}).items():
            s = p["scratchgen"]
            out.append(f"### {which.upper()}, threads {r['threads']}\n")
            out.append(f"scratchgen, cProfile over {s['steps']} steps: {s['wall_ms_per_step_profiled']:.1f} ms/step "
                       f"under the profiler. Top functions by own time (per step):\n")
            out.append(common.md_table(["function", "calls/step", "own ms/step", "cumulative ms/step"],
                                       [[f"`{x['func']}`", f"{x['calls_per_step']:.0f}", f"{x['tottime_ms']:.2f}",
                                         f"{x['cumtime_ms']:.2f}"] for x in s["by_tottime"][:15]]))
            for name in ("torch", "torch_fused"):
                t = p[name]
                out.append(f"\n{LABEL[name]}, torch profiler over {t['steps']} steps (torch threads "
                           f"{t['torch_threads']}), top ops by self CPU time (per step):\n")
                out.append(common.md_table(["op", "calls/step", "self ms/step", "total ms/step"],
                                           [[f"`{x['op']}`", f"{x['calls_per_step']:.0f}", f"{x['self_ms']:.2f}",
                                             f"{x['total_ms']:.2f}"] for x in t["by_self"][:12]]))
            out.append("")
    return "\n".join(out) if out else None


def model_keys(results):
    """The benchmarked models in run order, 'gp' (the critic-step comparison) last if present."""
    r = results[0]
    return list(r["models"]) + (["gp"] if "gp" in r else [])


NAMES = {"made": "MADE", "nice": "NICE", "vae": "VAE", "gan": "GAN", "wgan_gp": "WGAN-GP",
         "gp": "WGAN-GP critic step with / without the gradient penalty"}


def gp_table(results):
    rows = []
    for r in results:
        g = r.get("gp")
        if not g:
            continue
        ours = {v: g[f"scratchgen/{v}"]["median_s"] for v in GP_VARIANTS}
        for name in CONTENDERS:
            w, wo = g[f"{name}/gp"], g[f"{name}/no_gp"]
            cost = w["median_s"] - wo["median_s"]
            ratios = ["", "", ""] if name == "scratchgen" else [
                f"**{ours['gp'] / w['median_s']:.2f}**", f"{ours['no_gp'] / wo['median_s']:.2f}",
                f"**{(ours['gp'] - ours['no_gp']) / cost:.2f}**"]
            diff = "" if name == "scratchgen" else " / ".join(f"{g['loss_max_rel_diff'][f'{name}/{v}']:.1e}"
                                                                for v in GP_VARIANTS)
            rows.append([r["threads"], LABEL[name], f"{ms(w['median_s'])} ± {ms(w['iqr_s'])}",
                         f"{ms(wo['median_s'])} ± {ms(wo['iqr_s'])}", ms(cost),
                         f"{w['median_s'] / wo['median_s']:.2f}",
                         *ratios, diff])
    if not rows:
        return None
    return common.md_table(["threads", "framework", "critic step with GP, ms median ± IQR", "without GP, ms",
                            "GP cost, ms (difference)", "with / without", "ratio ours/this, with GP",
                            "ratio, without GP", "ratio of GP costs", "max rel. loss diff vs ours (GP / no GP)"],
                           rows, align="ll" + "r" * 8)


def report(results, info, command):
    v = info["versions"]
    keys = model_keys(results)
    trained = [k for k in keys if k != "gp"]
    def loads(r):
        return [r["models"][k]["load_after"] for k in trained] + ([r["gp"]["load_after"]] if "gp" in r else [])

    lines = [
        "# Training speed: scratchgen vs PyTorch CPU (" + ", ".join(NAMES[k] if k != "gp" else "WGAN-GP penalty"
                                                               for k in keys) + ")",
        "",
        f"- Date: {info['date']}",
        f"- Machine: {info['cpu']}, nproc={info['nproc']} (affinity {info['affinity']}), {info['platform']}",
        f"- Versions: python {v['python']}, numpy {v['numpy']}, torch {v['torch']}, numba {v['numba']}, "
        f"scratchgen {v['scratchgen']} (git {info['git']}, uncommitted working tree)",
        f"- Commands: `{command}`",
        "- Threads: one subprocess per thread count, OMP/OPENBLAS/MKL/NUMEXPR/NUMBA_NUM_THREADS set before any "
        "import, torch.set_num_threads(n). Seen: " + "; ".join(
            f"n={r['threads']}: torch {r['torch_threads']}, numba {r['numba_threads']}, "
            + ", ".join(f"{k} {x}" for k, x in r["blas"].items()) for r in results),
        "- 1-min load average (before / after each model): " + "; ".join(
            f"n={r['threads']}: {r['load_before']:.2f} / " + " / ".join(f"{x:.2f}" for x in loads(r))
            for r in results),
        "- Timing: `bench/common.py:compare`, scratchgen and torch steps interleaved one by one (round-robin) after "
        "warm-up steps; GC on. One step = tensor from the NumPy batch + zero_grad + forward + backward + Adam step + "
        "loss.item(), float32, real data. Both models start from identical weights (copied from the scratchgen "
        "model) and see the same batches (and the same noise), so their loss sequences are compared too (last "
        "column).",
    ]
    lines += [f"- {NAMES[k]}: {STEP_DEFINITION[k]}." for k in trained if k in STEP_DEFINITION]
    if trained:
        lines += [
            "- s/epoch = median step × steps per epoch (" + ", ".join(
                f"{NAMES[k]} {STEPS_PER_EPOCH[k]} × {BATCH[k]}" for k in trained) + " on the 50k train split; "
            "a last partial batch counts as a full step). Ratio = scratchgen / torch; the target is <= 1.0.",
            "- Two torch baselines, each with its own copy of the same initial weights: `torch.optim.Adam` as "
            "constructed by default (on CPU that is the single-tensor for-loop implementation, ~10 small ops per "
            "parameter tensor) and `Adam(fused=True)` (one fused kernel, torch's fastest CPU Adam). The issue's "
            "target is stated against the plain equivalent implementation (default Adam); the fused column is the "
            "stricter baseline.",
            "",
            "## Summary: seconds per epoch (from median step times)",
            "",
            summary_table(results),
            "",
            "## Per-step time and seconds per epoch",
            "",
            step_table(results),
        ]
    gt = gp_table(results)
    if gt:
        lines += ["", "## The WGAN-GP critic step: the cost of the gradient penalty", "",
                  "One critic step on 64 real digits and 64 fixed generated ones (the initial generator's): "
                  "zero_grad + critic on both + loss + backward + Adam(1e-4, (0.5, 0.9)) step + the logged floats. "
                  "With GP adds: a fresh epsilon, x-hat, the critic on x-hat, its gradient w.r.t. x-hat with "
                  "create_graph (scratchgen `sg.grad(create_graph=True)`, torch "
                  "`torch.autograd.grad(create_graph=True)`), "
                  "the penalty 10 E(||g|| - 1)^2, and the backward through that gradient (double backprop). "
                  "Without GP: the WGAN critic loss alone. The six contenders are interleaved. "
                  "GP cost = median with GP - median without.", "", gt]
    ft = fit_table(results)
    if ft:
        lines += ["", "## Real MADE epochs: `scratchgen.train.fit` vs a plain torch loop", "",
                  "Whole epochs (500 steps of 100, shuffled by epoch, DataLoader batches, no validation, no progress "
                  "bar), scratchgen and torch epochs alternated:", "", ft]
    gt = gemm_table(results)
    if gt:
        lines += ["", "## The step's GEMMs alone: NumPy/OpenBLAS vs torch/MKL", "",
                  "Every matmul of one training step with the engine's shapes and operand layouts "
                  "(`scratchgen.nn.functional.linear`: forward `x @ W.T`, backward `g @ W` (not for the data input) "
                  "and `g.T @ x`), on random float32 arrays, NumPy and torch calls interleaved:", "", gt]
    ps = profile_section(results)
    if ps:
        lines += ["", "## Where the time goes (profiles)", "", ps]
    return "\n".join(lines) + "\n"


def write_md(path, text, keys):
    """Write this run's report into `path` as a block named after its models, replacing the same block
    from an earlier run and leaving everything else in the file (other models' blocks, hand-written
    analysis) as it is. A new block goes at the end of the file."""
    models = ",".join(keys)
    start = f"<!-- generated by bench_models.py --models {models}; replaced when that command is run again -->"
    end = f"<!-- end of the block generated by bench_models.py --models {models} -->"
    block = f"{start}\n{text}{end}\n"
    old = open(path).read() if os.path.exists(path) else ""
    if start in old and end in old:
        rest = old[old.index(end) + len(end):]
        new = old[:old.index(start)] + block + (rest[1:] if rest.startswith("\n") else rest)
    elif KEEP_MARKER in old and models == "made,nice":   # the file's first layout: this report, then the analysis
        new = block + "\n" + old[old.index(KEEP_MARKER):]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block
    with open(path, "w") as f:
        f.write(new)


def main():
    if ARGS.emit_json:
        print(RESULT_TAG + json.dumps(run_one(THREADS[0])), flush=True)
        return
    if ARGS.from_json:
        runs = [json.load(open(f)) for f in ARGS.from_json]
        results = [r for run in runs for r in run["results"]]
        info = runs[0]["info"]
        command = "`; `".join(run["command"] for run in runs) + "` (one run per thread count, each under 5 min), " \
            "then merged with `python bench/bench_models.py " + " ".join(sys.argv[1:])
    else:
        results = [run_one(THREADS[0])] if IN_PROCESS else [run_subprocess(s) for s in THREADS]
        import numpy  # noqa: F401
        import torch  # noqa: F401
        import numba  # noqa: F401
        info = common.machine_info()
        command = "SCRATCHGEN_DATA=" + os.environ.get("SCRATCHGEN_DATA", "") + " python bench/bench_models.py " + \
            " ".join(sys.argv[1:])
    text = report(results, info, command)
    print(text)
    if ARGS.md:
        write_md(ARGS.md, text, model_keys(results))
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"info": info, "command": command, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
