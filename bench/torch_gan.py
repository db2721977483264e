#!/usr/bin/env python
"""PyTorch twins of scratchgen's MNIST GAN and WGAN-GP (scratchgen/models/gan.py, wgan.py).

    G  64 -> 256 -> 256 -> 784, ReLU, tanh output;   D / critic  784 -> 256 -> 256 -> 1, LeakyReLU(0.2)
    gan      non-saturating G loss, D loss BCE(a(x), 1) + BCE(a(G(z)), 0); Adam(2e-4, (0.5, 0.999)),
             batch 64, one D step per G step                                 (`scratchgen train gan`)
    wgan_gp  critic loss E f(G(z)) - E f(x) + 10 E (||grad_xhat f||_2 - 1)^2, the gradient from
             torch.autograd.grad(create_graph=True); G loss -E f(G(z)); Adam(1e-4, (0.5, 0.9)),
             n_critic 5 on 64-row chunks of a 320-row batch              (`scratchgen train wgan_gp`)

Parameter names are scratchgen's (generator.net.0.weight, ...), so a scratchgen GAN's weights load
straight in (`from_scratchgen`). Noise z, and the interpolation epsilon of the penalty, are drawn
from a NumPy generator with the same calls, in the same order, as scratchgen's `train_step` draws
them from its global generator, so from the same seed both frameworks see the same numbers.

    python bench/torch_gan.py check --steps 5               # gan and wgan_gp: losses and gradients
    python bench/torch_gan.py check --steps 5 --float64 --tol 1e-9    # the same in double precision
    SCRATCHGEN_DATA=/work/shared/data python bench/torch_gan.py train gan --epochs 100 --out runs/gan_torch
    SCRATCHGEN_DATA=/work/shared/data python bench/torch_gan.py train wgan_gp --epochs 100 --out runs/wgan_gp_torch
    python bench/torch_gan.py train gan --epochs 1 --max-steps 50 --limit-train 5000 --eval-samples 1000 \\
        --parzen-samples 0 --out /tmp/tg                    # smoke test

`check` runs scratchgen's `train_step` and the twin's from the same weights on the same batches and
noise, and compares the G / D losses, the penalty and every gradient; in float32 the WGAN-GP values
drift apart after a few iterations (rounding, amplified by Adam: see check_main), which --float64
shows (agreement to ~1e-15).

`train gan` mirrors step for step the runs behind the GAN rows of bench/RESULTS.md (made with the
since-removed examples/gan_mnist.py; the same model and game are `scratchgen train gan`,
scratchgen/specs/gan.py, and the recipes gan_sn / cgan_mnist), `train wgan_gp` mirrors `scratchgen train
wgan_gp`; both score the epoch with the best validation FID (5,000 samples against the validation
digits after every epoch), as those runs do. Both: the same initial weights, batch order and noise stream as
scratchgen under the same seed; per epoch G/D losses and D scores (metrics.jsonl); at the end
N samples in [0, 1] (samples.npz) scored by scratchgen.metrics (FID against the test digits and
Inception Score, from scratchgen's MNIST classifier), so both frameworks are scored by the same code
on the same number of samples. torch is a bench-only dependency; scratchgen never imports it.
"""
import argparse
import contextlib
import copy
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import from_scratchgen, rel_diff  # noqa: E402  (puts the repo on sys.path)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

# The recipes: optimizer, batch (n_critic * m rows) and penalty weight of each objective.
RECIPES = {"gan": dict(lr=2e-4, betas=(0.5, 0.999), batch_size=64, n_critic=1),
           "hinge": dict(lr=2e-4, betas=(0.5, 0.999), batch_size=64, n_critic=1),   # the GAN, hinge loss
           "wgan_gp": dict(lr=1e-4, betas=(0.5, 0.9), batch_size=5 * 64, n_critic=5, gp_weight=10.0)}


def mlp(sizes, hidden_act, output=None, dropout=0.0, spectral_norm=False):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        # torch.nn.utils.spectral_norm: the same power iteration as scratchgen's (v, then u, per training forward)
        layers.append(torch.nn.utils.spectral_norm(tnn.Linear(n_in, n_out)) if spectral_norm else tnn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(hidden_act())
            if dropout:
                layers.append(tnn.Dropout(dropout))
    if output is not None:
        layers.append(output())
    return tnn.Sequential(*layers)


class TorchGenerator(tnn.Module):
    def __init__(self, latent_dim=64, hidden=(256, 256), out_dim=784):
        super().__init__()
        self.net = mlp([latent_dim, *hidden, out_dim], tnn.ReLU, tnn.Tanh)

    def forward(self, z):
        return self.net(z)


class TorchDiscriminator(tnn.Module):
    def __init__(self, in_dim=784, hidden=(256, 256), dropout=0.0, spectral_norm=False):
        super().__init__()
        self.net = mlp([in_dim, *hidden, 1], lambda: tnn.LeakyReLU(0.2), dropout=dropout, spectral_norm=spectral_norm)

    def forward(self, x):
        return self.net(x).reshape(-1)


def gradient_penalty(critic, real, fake, eps):
    """E[(||grad_xhat f(xhat)||_2 - 1)^2], xhat = eps * real + (1 - eps) * fake (double backprop)."""
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_()
    g, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((g.reshape(len(g), -1).norm(2, dim=1) - 1) ** 2).mean()


class TorchGAN(tnn.Module):
    """The two players and the objective ('gan' or 'wgan_gp'), as scratchgen's GAN / WGANGP."""

    def __init__(self, objective="gan", latent_dim=64, gp_weight=10.0, n_critic=None, label_smoothing=0.0,
                 d_dropout=0.0, d_spectral_norm=False):
        super().__init__()
        self.objective, self.latent_dim, self.gp_weight = objective, latent_dim, gp_weight
        self.label_smoothing = label_smoothing   # GAN only: one-sided, real targets 1 - s
        self.n_critic = n_critic or RECIPES[objective]["n_critic"]
        self.generator = TorchGenerator(latent_dim)
        self.discriminator = TorchDiscriminator(dropout=d_dropout, spectral_norm=d_spectral_norm)

    def discriminator_loss(self, real, fake, eps=None):
        """(loss, stats): stats are floats, mean D(x) / D(G(z)) (probabilities for the GAN, critic
        values for WGAN-GP), plus the Wasserstein estimate and the penalty for WGAN-GP."""
        a_real, a_fake = self.discriminator(real), self.discriminator(fake)
        if self.objective == "hinge":
            loss = TF.relu(1 - a_real).mean() + TF.relu(1 + a_fake).mean()
            return loss, {"d_loss": loss.item(), "d_real": a_real.detach().mean().item(),
                          "d_fake": a_fake.detach().mean().item()}
        if self.objective == "gan":
            loss = (TF.binary_cross_entropy_with_logits(a_real, torch.full_like(a_real, 1 - self.label_smoothing))
                    + TF.binary_cross_entropy_with_logits(a_fake, torch.zeros_like(a_fake)))
            return loss, {"d_loss": loss.item(), "d_real": a_real.detach().sigmoid().mean().item(),
                          "d_fake": a_fake.detach().sigmoid().mean().item()}
        loss = a_fake.mean() - a_real.mean()
        d_real, d_fake = a_real.detach().mean().item(), a_fake.detach().mean().item()
        stats = {"d_real": d_real, "d_fake": d_fake, "wasserstein": d_real - d_fake}
        if self.objective == "wgan_gp":   # 'wgan' (the critic loss alone) serves the benchmark of the penalty
            gp = gradient_penalty(self.discriminator, real, fake, eps)
            loss = loss + self.gp_weight * gp
            stats["gp"] = gp.item()
        return loss, {"d_loss": loss.item(), **stats}

    def generator_loss(self, fake):
        a = self.discriminator(fake)
        return TF.softplus(-a).mean() if self.objective == "gan" else -a.mean()


def gan_pair(objective="gan", latent_dim=64, d_dropout=0.0, d_spectral_norm=False):
    """(scratchgen GAN or WGANGP, identical TorchGAN), the scratchgen one built from the global generator.
    With spectral norm, u and v are copied too, so both start from the same estimate."""
    from scratchgen.models.gan import Discriminator, Generator
    from scratchgen.models.wgan import make_objective
    G = Generator(latent_dim, (256, 256), 784, activation="relu", output="tanh")
    D = Discriminator(784, (256, 256), activation="leaky_relu", dropout=d_dropout, spectral_norm=d_spectral_norm)
    sgm = make_objective(objective, G, D, latent_dim)
    twin = TorchGAN(objective, latent_dim, n_critic=sgm.n_critic, d_dropout=d_dropout, d_spectral_norm=d_spectral_norm)
    renamed = {".module.weight": ".weight_orig", ".module.bias": ".bias", ".u": ".weight_u", ".v": ".weight_v"}
    state = {}
    for k, v in sgm.state_dict().items():
        for ours, theirs in renamed.items():
            if d_spectral_norm and k.startswith("discriminator.") and k.endswith(ours):
                k = k[:-len(ours)] + theirs
                break
        state[k] = torch.from_numpy(np.array(v, dtype=np.float32))
    twin.load_state_dict(state, strict=True)
    return sgm, twin


class TorchEMA:
    """scratchgen.optim.EMA's recursion on torch parameters: the average starts at the initial
    weights, shadow <- decay * shadow + (1 - decay) * param after every step."""

    def __init__(self, params, decay):
        self.params, self.decay = list(params), decay
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        for s, p in zip(self.shadow, self.params):
            s.mul_(self.decay).add_(p, alpha=1 - self.decay)

    @contextlib.contextmanager
    def average_parameters(self):
        live = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params):
                p.copy_(s)
        try:
            yield self
        finally:
            with torch.no_grad():
                for a, p in zip(live, self.params):
                    p.copy_(a)


def make_optimizers(model, fused=None):
    r = RECIPES[model.objective]
    make = lambda m: torch.optim.Adam(m.parameters(), lr=r["lr"], betas=r["betas"], fused=fused)  # noqa: E731
    return make(model.generator), make(model.discriminator)


def normal(rng, n, dim, dtype=np.float32):
    """z ~ N(0, I), drawn as scratchgen.creation.randn draws it (in the data's dtype)."""
    return torch.from_numpy(rng.standard_normal((n, dim), dtype=dtype))


def train_step(model, g_opt, d_opt, real, rng):
    """One iteration of Algorithm 1, as scratchgen.specs.gan.train_step: n_critic critic steps on
    consecutive chunks of `real`, each against fresh G(z) (and, for WGAN-GP, a fresh epsilon drawn
    after z, as scratchgen's gradient_penalty does), then one G step on m fresh samples."""
    from scratchgen.specs.gan import _chunks
    dtype = np.float64 if real.dtype == torch.float64 else np.float32
    model.generator.requires_grad_(False)
    model.discriminator.requires_grad_(True)
    for a, b in _chunks(len(real), model.n_critic):
        x = real[a:b]
        with torch.no_grad():
            fake = model.generator(normal(rng, b - a, model.latent_dim, dtype))
        eps = torch.from_numpy(rng.random((b - a, 1), dtype=dtype)) if model.objective == "wgan_gp" else None
        d_opt.zero_grad()
        loss, stats = model.discriminator_loss(x, fake, eps)
        loss.backward()
        d_opt.step()
    m = b - a
    model.discriminator.requires_grad_(False)
    model.generator.requires_grad_(True)
    g_opt.zero_grad()
    g_loss = model.generator_loss(model.generator(normal(rng, m, model.latent_dim, dtype)))
    g_loss.backward()
    g_opt.step()
    return {"g_loss": g_loss.item(), **stats}


# -- equivalence check ------------------------------------------------------------------------------
def initial_gradients(objective, real, seed=0, float64=False):
    """Worst per-tensor relative difference of the gradients of D's loss (penalty included) and of
    G's loss at the initial weights, same real batch, z and epsilon, before any optimizer step."""
    import scratchgen as sg
    sg.manual_seed(seed)
    sgm, tm = gan_pair(objective)
    dtype = np.float64 if float64 else np.float32
    if float64:
        sgm, tm = sgm.double(), tm.double()
    real = real.astype(dtype)
    z = np.random.default_rng(seed + 1).standard_normal((len(real), sgm.latent_dim), dtype=dtype)
    t_params, worst = dict(tm.named_parameters()), {}
    for player in ("discriminator", "generator"):
        sg.manual_seed(seed + 2)   # scratchgen's penalty draws epsilon from the global generator
        eps = torch.from_numpy(np.random.default_rng(seed + 2).random((len(real), 1), dtype=dtype))
        sgm.zero_grad()
        tm.zero_grad()
        if player == "discriminator":
            sgm.discriminator_loss(sg.tensor(real), sgm(sg.tensor(z)).detach())[0].backward()
            tm.discriminator_loss(torch.from_numpy(real), tm.generator(torch.from_numpy(z)).detach(), eps)[0].backward()
        else:
            sgm.generator_loss(sgm(sg.tensor(z))).backward()
            tm.generator_loss(tm.generator(torch.from_numpy(z))).backward()
        params = dict(getattr(sgm, player).named_parameters())
        worst[player] = max(rel_diff(p.grad, t_params[f"{player}.{n}"].grad) for n, p in params.items()
                            if p.grad is not None)
    return worst


def check(objective, batches, seed=0, float64=False, log=print):
    """scratchgen's train_step and the torch twin's, from the same weights, on the same batches with
    the same noise; per step: G and D loss rel diffs, worst gradient and parameter rel diffs.
    float64: both models and the data in double precision (rounding differences ~1e-16, so what
    remains of a float32 difference is rounding, amplified by training, not a different computation)."""
    import scratchgen as sg
    from scratchgen.specs.gan import AdversarialOptimizer, train_step as sg_train_step
    sg.manual_seed(seed)
    sgm, tm = gan_pair(objective)
    if float64:
        sgm, tm, batches = sgm.double(), tm.double(), [b.astype(np.float64) for b in batches]
    r = RECIPES[objective]
    sg_opt = AdversarialOptimizer(*(sg.optim.Adam(m.parameters(), lr=r["lr"], betas=r["betas"])
                                    for m in (sgm.generator, sgm.discriminator)))
    g_opt, d_opt = make_optimizers(tm)
    sg.manual_seed(seed + 1)                      # scratchgen draws z and eps from its global generator
    rng = np.random.default_rng(seed + 1)         # ... and the twin the same numbers from this one
    t_params = dict(tm.named_parameters())
    rows = []
    for step, xb in enumerate(batches, 1):
        s = sg_train_step(sgm, sg_opt, sg.tensor(xb))
        t = train_step(tm, g_opt, d_opt, torch.from_numpy(xb), rng)
        # After a step each parameter holds the gradient of its player's last loss (G frozen in
        # D's steps and the other way round), so every parameter is compared.
        grad_rel = {n: rel_diff(p.grad, t_params[n].grad) for n, p in sgm.named_parameters()}
        param_rel = max(rel_diff(p.detach(), t_params[n].detach()) for n, p in sgm.named_parameters())
        worst = max(grad_rel, key=grad_rel.get)
        row = {"step": step, **{f"{k}_sg": s[k] for k in s}, **{f"{k}_torch": t[k] for k in t},
               "g_loss_rel": abs(s["g_loss"] - t["g_loss"]) / abs(t["g_loss"]),
               "d_loss_rel": abs(s["d_loss"] - t["d_loss"]) / abs(t["d_loss"]),
               "grad_rel_max": grad_rel[worst], "grad_rel_max_param": worst, "param_rel_max": param_rel}
        if objective == "wgan_gp":
            row["gp_rel"] = abs(s["gp"] - t["gp"]) / abs(t["gp"])
        rows.append(row)
        if log:
            log(f"{objective} step {step}: G loss {s['g_loss']:.6f} / {t['g_loss']:.6f}, D loss {s['d_loss']:.6f} / "
                f"{t['d_loss']:.6f}" + (f", GP {s['gp']:.6f} / {t['gp']:.6f}" if objective == "wgan_gp" else "")
                + f" (scratchgen / torch); max grad rel diff {grad_rel[worst]:.2e} ({worst}); "
                f"max param rel diff {param_rel:.2e}")
    return rows


def check_main(args):
    """Pass: everything within --tol, except WGAN-GP after the first optimizer steps: its losses and
    penalty within --wgan-gp-tol, its gradients printed and saved but not gated. In float32 Adam's
    first steps turn rounding-level differences in gradient entries that nearly cancel (|g| ~ eps)
    into lr-sized parameter differences, and WGAN-GP's critic, trained 5 times per iteration on a
    loss that is a difference of means, shows it most; --float64 shows it is rounding (2e-15)."""
    torch.set_num_threads(args.threads)
    x, _ = mnist("train")
    order = np.random.default_rng([0, 0]).permutation(len(x))   # the first batches of DataLoader(seed=0)
    out, ok = {}, True
    for objective in args.objectives:
        bs = RECIPES[objective]["batch_size"]
        init = initial_gradients(objective, x[order[:64]], float64=args.float64)
        print(f"{objective}: gradients at the initial weights, worst per-tensor rel diff: D loss "
              f"{init['discriminator']:.2e}, G loss {init['generator']:.2e}")
        rows = check(objective, [x[order[i * bs:(i + 1) * bs]] for i in range(args.steps)], float64=args.float64)
        keys = ("g_loss_rel", "d_loss_rel", "grad_rel_max", "param_rel_max")
        keys += ("gp_rel",) if objective == "wgan_gp" else ()
        worst = {k: max(r[k] for r in rows) for k in keys}
        worst.update({f"initial_grad_rel_{k}": v for k, v in init.items()})
        out[objective] = {"rows": rows, "worst": worst}
        if objective == "wgan_gp":
            ok &= all(v < (args.tol if k.startswith("initial") else args.wgan_gp_tol) for k, v in worst.items()
                      if k not in ("grad_rel_max", "param_rel_max"))
        else:
            ok &= all(v < args.tol for k, v in worst.items() if k != "param_rel_max")
    print("worst over steps:", json.dumps({k: v["worst"] for k, v in out.items()}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print("EQUIVALENT" if ok else f"MISMATCH (tolerance {args.tol})")
    return 0 if ok else 1


# -- the reference training runs --------------------------------------------------------------------
def mnist(split, limit=None):
    """(N, 784) float32 pixels in [-1, 1] and labels, as scratchgen/specs/gan.py loads them."""
    from scratchgen.data import load_mnist, to_symmetric
    images, labels = load_mnist(split)
    return to_symmetric(images[:limit]).reshape(-1, 784), labels[:limit]


def to_unit(x):
    return (np.clip(np.asarray(x), -1, 1) + 1) / 2


@torch.no_grad()
def draw(model, n, rng, batch=1000):
    """n samples in [0, 1], noise in chunks of 1000 as scratchgen's draw() / samples_unit()."""
    model.eval()
    out = [model.generator(normal(rng, min(batch, n - i), model.latent_dim)).numpy() for i in range(0, n, batch)]
    return to_unit(np.concatenate(out))


@torch.no_grad()
def discriminator_scores(model, x, rng):
    """Mean D(x) on real digits and on as many samples (noise drawn first, as scratchgen does);
    probabilities for the GAN, critic values for WGAN-GP."""
    model.eval()   # no dropout in D's diagnostics (as the reference runs)
    fake = model.generator(normal(rng, len(x), model.latent_dim))
    read = torch.sigmoid if model.objective == "gan" else torch.clone   # hinge / WGAN: raw scores
    return {"d_real": read(model.discriminator(torch.from_numpy(x))).mean().item(),
            "d_fake": read(model.discriminator(fake)).mean().item()}


def train(args, log=print):
    import scratchgen as sg
    from scratchgen import metrics
    from scratchgen.data import describe_mnist_source
    from scratchgen.train import seed_everything
    objective, r = args.objective, RECIPES[args.objective]
    bs = args.batch_size or r["batch_size"]
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    log(f"data: {describe_mnist_source()}")
    seed_everything(args.seed)
    torch.manual_seed(args.seed)
    train_x, _ = mnist("train", args.limit_train)
    valid_x, _ = mnist("valid")
    test_x, _ = mnist("test")
    _, model = gan_pair(objective, d_dropout=args.d_dropout,   # scratchgen's initial weights under this seed
                        d_spectral_norm=args.d_spectral_norm)
    model.label_smoothing = args.label_smoothing
    rng = sg.random.rng()                     # ... and its global stream from here on
    if objective in ("gan", "hinge"):
        rng.standard_normal((100, model.latent_dim), dtype=np.float32)   # examples/gan_mnist.py's fixed_z (removed)
    g_opt, d_opt = make_optimizers(model)
    ema = TorchEMA(model.generator.parameters(), args.ema) if args.ema else None
    averaged = ema.average_parameters if ema else contextlib.nullcontext
    clf = metrics.mnist_classifier() if args.eval_samples else None
    log_path = os.path.join(args.out, "metrics.jsonl")
    if os.path.exists(log_path):
        os.remove(log_path)
    n = len(train_x)
    # Model selection on the validation FID, in both scratchgen runs (the since-removed examples/gan_mnist.py
    # kept the best epoch's weights; `fit` restores them). Patience 0: every epoch runs.
    best_fid, best_epoch, best_state = math.inf, args.epochs, None
    decays = []
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0, sums, steps, rows = time.perf_counter(), {}, 0, 0
        order = np.random.default_rng([args.seed, epoch - 1]).permutation(n)   # as scratchgen's DataLoader
        for b in range(0, n, bs):
            real = torch.from_numpy(train_x[order[b:b + bs]])
            stats = train_step(model, g_opt, d_opt, real, rng)
            if ema:
                ema.update()
            if not math.isfinite(stats["g_loss"]) or not math.isfinite(stats["d_loss"]):
                raise FloatingPointError(f"loss became non-finite at epoch {epoch}, step {steps}: {stats}")
            # examples/gan_mnist.py (since removed) averaged per step; `fit` (the wgan_gp CLI run) weights by batch rows
            w = 1 if objective in ("gan", "hinge") else len(real)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v * w
            steps, rows = steps + 1, rows + w
            if args.max_steps and steps >= args.max_steps:
                break
        train_time = time.perf_counter() - t0
        record = {"epoch": epoch, "steps": steps, "train_loss": sums.pop("g_loss") / rows,
                  **{f"train_{k}": v / rows for k, v in sums.items()}}
        record.update({f"valid_{k}": v for k, v in discriminator_scores(model, valid_x[:1000], rng).items()})
        with averaged():
            if clf is not None:
                record["valid_fid"] = metrics.mnist_fid(draw(model, args.eval_samples, rng), to_unit(valid_x), clf)
                if record["valid_fid"] < best_fid:
                    best_fid, best_epoch, best_state = record["valid_fid"], epoch, copy.deepcopy(model.state_dict())
        record["lr"] = g_opt.param_groups[0]["lr"]
        if args.lr_decay_start and epoch == args.lr_decay_start:   # as examples/gan_mnist.py did (removed)
            decays = [torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.0, total_iters=args.epochs - epoch + 1)
                      for o in (g_opt, d_opt)]
        for d in decays:
            d.step()
        record["train_time_s"] = round(train_time, 2)
        record["time_s"] = round(time.perf_counter() - t0, 2)
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        log(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        if args.patience and epoch - best_epoch >= args.patience:
            log(f"early stopping: no better validation FID for {args.patience} epochs (best epoch {best_epoch})")
            break
    train_time = time.time() - start
    if best_state is not None:   # (its G averaged, with --ema)
        model.load_state_dict(best_state)
    elif ema:
        with torch.no_grad():
            for s, p in zip(ema.shadow, ema.params):
                p.copy_(s)
    torch.save(model.state_dict(), os.path.join(args.out, "model.pt"))
    results = {"framework": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "objective": objective, "epochs": epoch, "best_epoch": best_epoch, "best_valid_fid": best_fid,
               "train_time_s": round(train_time, 1), "data": describe_mnist_source()}
    if objective == "wgan_gp":   # the spec's test evaluation starts with the D scores
        results.update({f"test_{k}": v for k, v in discriminator_scores(model, test_x[:1000], rng).items()})
    if clf is not None:
        samples = draw(model, args.eval_samples, rng)
        np.savez_compressed(os.path.join(args.out, "samples.npz"), samples=samples.astype(np.float32))
        results["test_fid"] = metrics.mnist_fid(samples, to_unit(test_x), clf)
        score, std = metrics.mnist_inception_score(samples, clf)
        results["test_inception_score"], results["test_inception_score_std"] = score, std
        results["real_test_inception_score"] = metrics.mnist_inception_score(to_unit(test_x), clf)[0]
        results.update(eval_samples=len(samples), classifier_test_acc=clf.meta["test_acc"])
    if args.parzen_samples:
        parzen = metrics.parzen_window(draw(model, args.parzen_samples, rng), to_unit(valid_x), to_unit(test_x))
        results.update(test_parzen_ll=parzen["mean"], test_parzen_sem=parzen["sem"], parzen_sigma=parzen["sigma"],
                       parzen_samples=args.parzen_samples)
    if clf is not None and args.is_samples:   # as the GAN rows of bench/RESULTS.md: 50,000 samples in 10 splits
        score, std = metrics.mnist_inception_score(draw(model, args.is_samples, rng), clf)
        results["test_is"] = {"samples": args.is_samples, "splits": 10, "mean": score, "std": std}
    results["config"] = {k: v for k, v in vars(args).items() if k not in ("func", "cmd")}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def add_parsers(sub, check_name="check", train_name="train", objective=None):
    """`check` and `train` (also reachable through bench/torch_models.py as check-gan / gan / wgan_gp)."""
    if check_name:
        c = sub.add_parser(check_name, help="GAN and WGAN-GP: scratchgen vs torch, same weights, batches and noise")
        c.add_argument("--steps", type=int, default=5)
        c.add_argument("--objectives", nargs="+", choices=list(RECIPES), default=list(RECIPES))
        c.add_argument("--tol", type=float, default=1e-4)
        c.add_argument("--wgan-gp-tol", type=float, default=1e-3, help="WGAN-GP losses after the first steps")
        c.add_argument("--threads", type=int, default=1)
        c.add_argument("--json", default=None, help="write the per-step numbers here")
        c.add_argument("--float64", action="store_true", help="models and data in float64 (see check())")
        c.set_defaults(func=check_main)
    t = sub.add_parser(train_name, help="train the torch GAN / WGAN-GP as scratchgen's run does")
    if objective is None:
        t.add_argument("objective", choices=list(RECIPES))
    else:
        t.set_defaults(objective=objective)
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (gan 64, wgan_gp 320)")
    t.add_argument("--limit-train", type=int, default=None, help="train on the first N digits")
    t.add_argument("--max-steps", type=int, default=None, help="at most N generator steps per epoch")
    t.add_argument("--eval-samples", type=int, default=5000, help="samples for FID / IS (0: skip them)")
    t.add_argument("--is-samples", type=int, default=50000, help="samples for the final IS in 10 splits (0: skip)")
    t.add_argument("--parzen-samples", type=int, default=10000, help="samples for the Parzen window (0: skip)")
    t.add_argument("--label-smoothing", type=float, default=0.0, help="GAN: one-sided, real targets 1 - s")
    t.add_argument("--d-dropout", type=float, default=0.0, help="GAN: dropout after D's hidden layers")
    t.add_argument("--d-spectral-norm", action="store_true", help="GAN: spectral normalisation of D's layers")
    if objective == "gan":
        t.add_argument("--hinge", action="store_true", help="the hinge loss (scratchgen train gan --set loss=hinge)")
    t.add_argument("--ema", type=float, default=0.0, help="evaluate G's exponential moving average, this decay")
    t.add_argument("--lr-decay-start", type=int, default=0,
                   help="from this epoch on, decay both lrs linearly to zero at the last epoch (0: constant)")
    t.add_argument("--patience", type=int, default=0,
                   help="stop after N epochs without a better validation FID (0: run every epoch)")
    t.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None)
    t.set_defaults(func=lambda a: print(json.dumps({k: v for k, v in train(_default_out(a)).items()
                                                    if k != "config"}, indent=2)))


def _default_out(args):
    if getattr(args, "hinge", False):
        args.objective = "hinge"
    args.out = args.out or f"runs/{args.objective}_torch"
    return args


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_parsers(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
