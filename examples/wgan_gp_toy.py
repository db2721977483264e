"""GAN, WGAN (weight clipping) and WGAN-GP on 2-D toy data, pictured as in Figure 1 of
Gulrajani et al. (2017): the critic's value surface as contours, real points (orange) and
generated ones (green), weight clipping next to gradient penalty.

    python examples/wgan_gp_toy.py --iters 5000 --out runs/wgan_gp_toy        # 3 data sets x 3 objectives
    python examples/wgan_gp_toy.py --iters 200 --hidden 64 --out runs/toy_smoke  # a smoke test
    python examples/wgan_gp_toy.py --datasets eight_gaussians --objectives wgan wgan_gp
    python examples/wgan_gp_toy.py --fixed-generator --iters 2000 ...          # Figure 1(a) itself

Networks as in the released gan_toy.py: G 2 -> 512 -> 512 -> 512 -> 2 and critic
2 -> 512 -> 512 -> 512 -> 1, ReLU, z ~ N(0, I_2), batch 256, fresh data every step.
Optimizers as in the papers: GAN Adam 1e-4 (0.5, 0.9) with one D step per G step (the same
Adam as WGAN-GP, so that only the objective differs); WGAN RMSProp 5e-5, 5 critic steps,
clipping at 0.01; WGAN-GP Adam 1e-4 (0.5, 0.9), 5 critic steps, lambda = 10 (the paper's value;
the released toy code uses 0.1: --gp-weight 0.1).

--fixed-generator reproduces Figure 1(a): no generator is trained; the critics (clipping and
gradient penalty) are trained for --iters steps against "generated" points that are real points
plus N(0, I) noise, and their value surfaces are drawn. Clipping gives a critic close to a
simple (almost linear) function that ignores the structure of the data; the penalised critic
follows the data.

Writes figure.png (rows: data sets; columns: objectives), coverage.png (modes covered and
fraction of high-quality samples during training, for the Gaussian mixtures), results.json,
and prints mode coverage and the high-quality fraction (2,500 samples; a sample is high quality
within 3 standard deviations of its nearest mode) for every run.
"""
import argparse
import json
import os
import time

import numpy as np

import scratchgen as sg
from scratchgen import metrics, optim
from scratchgen.data import TOY_DATASETS
from scratchgen.models.gan import AdversarialOptimizer, train_step
from scratchgen.models.wgan import OPTIMIZERS, WGAN, make_objective, plot_toy, toy_networks
from scratchgen.train import seed_everything

NAMES = {"gan": "GAN", "wgan": "WGAN (weight clipping)", "wgan_gp": "WGAN-GP (gradient penalty)"}


def make_optimizers(kind, G, D, lr_scale=1.0):
    cfg = OPTIMIZERS[kind]
    if cfg["optimizer"] == "rmsprop":
        make = lambda ps: optim.RMSProp(ps, lr=cfg["lr"] * lr_scale)  # noqa: E731
    else:
        make = lambda ps: optim.Adam(ps, lr=cfg["lr"] * lr_scale, betas=tuple(cfg["betas"]))  # noqa: E731
    return AdversarialOptimizer(make(G.parameters()), make(D.parameters()))


def has_modes(name):
    return hasattr(TOY_DATASETS[name], "centers")


def coverage(model, name, n=2500):
    if not has_modes(name):
        return {}
    out = metrics.toy_mode_coverage(model.sample(n).numpy(), name)
    return {"modes_covered": out["modes_covered"], "num_modes": out["num_modes"], "high_quality": out["high_quality"]}


def train(kind, name, args, rng):
    """Train one objective on one data set; return (model, history, final stats)."""
    G, D = toy_networks((args.hidden,) * 3)
    model = make_objective(kind, G, D, 2, gp_weight=args.gp_weight, clip_value=args.clip)
    opt = make_optimizers(kind, G, D, args.lr_scale)
    # --lr-decay: both learning rates fall linearly to 0 (WGAN-GP's released CIFAR-10 schedule), which
    # lets the generator settle on the narrow modes instead of jittering around them.
    schedules = ([optim.lr_scheduler.LinearLR(o, total_iters=args.iters) for o in (opt.generator, opt.discriminator)]
                 if args.lr_decay else [])
    data = TOY_DATASETS[name]
    history, t0 = [], time.perf_counter()
    for it in range(1, args.iters + 1):
        real = sg.tensor(data(args.batch_size * model.n_critic, seed=rng)[0])
        stats = train_step(model, opt, real)
        for schedule in schedules:
            schedule.step()
        if it % args.eval_every == 0 or it == args.iters:
            history.append({"iter": it, **stats, **coverage(model, name)})
            print(f"{name} {kind} iter {it}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                       for k, v in history[-1].items() if k != "iter"), flush=True)
    return model, history, {**history[-1], "seconds": round(time.perf_counter() - t0, 1)}


def train_fixed_generator(kind, name, args, rng):
    """Figure 1(a): a critic trained against real points + N(0, I) noise, no generator."""
    G, D = toy_networks((args.hidden,) * 3)
    model = make_objective(kind, G, D, 2, gp_weight=args.gp_weight, clip_value=args.clip)
    d_opt = make_optimizers(kind, G, D, args.lr_scale).discriminator
    data = TOY_DATASETS[name]
    t0 = time.perf_counter()
    for _ in range(args.iters):
        real = sg.tensor(data(args.batch_size, seed=rng)[0])
        other = data(args.batch_size, seed=rng)[0]
        fake = sg.tensor((other + rng.standard_normal(other.shape)).astype(np.float32))
        d_opt.zero_grad()
        loss, stats = model.discriminator_loss(real, fake)
        loss.backward()
        d_opt.step()
        model.after_discriminator_step()
    fake_points = data(1000, seed=rng)[0] + rng.standard_normal((1000, 2))
    return model, fake_points.astype(np.float32), {**{k: float(v) for k, v in stats.items()},
                                                   "seconds": round(time.perf_counter() - t0, 1)}


def coverage_figure(histories, path):
    import matplotlib.pyplot as plt
    modal = [(name, runs) for name, runs in histories.items() if has_modes(name)]
    if not modal:
        return None
    fig, axes = plt.subplots(2, len(modal), figsize=(4.2 * len(modal), 6), squeeze=False)
    for j, (name, runs) in enumerate(modal):
        for kind, hist in runs.items():
            its = [h["iter"] for h in hist]
            axes[0, j].plot(its, [h["modes_covered"] for h in hist], label=NAMES[kind])
            axes[1, j].plot(its, [h["high_quality"] for h in hist], label=NAMES[kind])
        axes[0, j].set_title(f"{name}: modes covered")
        axes[1, j].set_title(f"{name}: high-quality fraction")
        for ax in axes[:, j]:
            ax.set_xlabel("generator iteration")
            ax.grid(alpha=0.3)
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["eight_gaussians", "twentyfive_gaussians", "swiss_roll"],
                   choices=sorted(TOY_DATASETS))
    p.add_argument("--objectives", nargs="+", default=["gan", "wgan", "wgan_gp"], choices=list(NAMES))
    p.add_argument("--iters", type=int, default=5000, help="generator iterations (critic steps with --fixed-generator)")
    p.add_argument("--hidden", type=int, default=512, help="width of the three hidden layers")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--gp-weight", type=float, default=10.0, help="lambda of WGAN-GP")
    p.add_argument("--clip", type=float, default=0.01, help="WGAN's clipping value c")
    p.add_argument("--lr-scale", type=float, default=1.0, help="multiply every learning rate")
    p.add_argument("--lr-decay", action="store_true", help="decay the learning rates linearly to 0")
    p.add_argument("--eval-every", type=int, default=None, help="iterations between coverage measurements")
    p.add_argument("--fixed-generator", action="store_true", help="Figure 1(a): critics only, against data + noise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/wgan_gp_toy")
    args = p.parse_args()
    args.eval_every = args.eval_every or max(1, args.iters // 20)
    os.makedirs(args.out, exist_ok=True)
    if args.fixed_generator:
        args.objectives = [k for k in args.objectives if k != "gan"] or ["wgan", "wgan_gp"]

    import matplotlib.pyplot as plt
    rows, cols = len(args.datasets), len(args.objectives)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False)
    results, histories = {}, {}
    for i, name in enumerate(args.datasets):
        histories[name] = {}
        for j, kind in enumerate(args.objectives):
            seed_everything(args.seed)
            rng = np.random.default_rng([args.seed, i, j])
            real = TOY_DATASETS[name](1000, seed=rng)[0]
            if args.fixed_generator:
                model, fake, final = train_fixed_generator(kind, name, args, rng)
            else:
                model, history, final = train(kind, name, args, rng)
                histories[name][kind] = history
                fake = model.sample(1000).numpy()
            results[f"{name}/{kind}"] = final
            label = "critic value" if isinstance(model, WGAN) else "D logit"
            plot_toy(model, real, fake, ax=axes[i, j], title=f"{NAMES[kind]}\n{name} ({label})")
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in final.items()}
            print(f"{name:22s} {kind:8s} {shown}", flush=True)
    title = ("critics trained against data + N(0, I) noise (WGAN-GP Fig. 1a)" if args.fixed_generator
             else f"{args.iters} generator iterations: critic value (contours), data (orange), samples (green)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "figure.png"), dpi=100)
    plt.close(fig)
    if not args.fixed_generator:
        coverage_figure(histories, os.path.join(args.out, "coverage.png"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "results": results, "history": histories}, f, indent=1)

    print("\nmode coverage (2,500 samples; high quality = within 3 std of the nearest mode)")
    print(f"{'data':22s} {'objective':28s} {'modes':>7s} {'high-quality':>13s}")
    for key, r in results.items():
        name, kind = key.split("/")
        if "modes_covered" in r:
            modes = f"{r['modes_covered']:>3d}/{r['num_modes']:<3d}"
            print(f"{name:22s} {NAMES[kind]:28s} {modes} {r['high_quality']:>13.3f}")
    print(f"wrote {args.out}/figure.png" + ("" if args.fixed_generator else ", coverage.png") + ", results.json")


if __name__ == "__main__":
    main()
