"""Train the MLP GAN of Goodfellow et al. (2014) on MNIST, with scratchgen's pieces spelled out.

    python examples/gan_mnist.py --epochs 100 --out runs/gan_mnist                 # the full run
    python examples/gan_mnist.py --epochs 2 --max-steps 100 --limit-train 5000 \\
        --eval-samples 1000 --parzen-samples 1000 --out runs/gan_smoke               # a smoke test
    python examples/gan_mnist.py --saturating --out runs/gan_minimax                 # the minimax G loss
    python examples/gan_mnist.py --label-smoothing 0.1 ...                           # one-sided smoothing
    python examples/gan_mnist.py --info-codes 10 ...          # InfoGAN: a 10-way code in z, read back by Q
    python examples/gan_mnist.py --epochs 450 --ema 0.9999 --d-spectral-norm --lr-decay-start 300 \
        --out runs/gan_sn                  # the best recipe: IS 9.03, FID 2.7 on 50k samples (bench/RESULTS.md)
    python examples/gan_mnist.py --epochs 600 ... --resume runs/gan_sn/checkpoint.npz   # continue a run
    python examples/gan_mnist.py --hinge --n-critic 2 ...    # SN-GAN's hinge loss; two D steps per G step

G: 64 -> 256 -> 256 -> 784 (ReLU, tanh output), D: 784 -> 256 -> 256 -> 1 (LeakyReLU 0.2),
pixels scaled to [-1, 1], Adam (lr 2e-4, betas (0.5, 0.999)) for both, batch 64, one D step
per G step (k = 1), non-saturating generator loss unless --saturating.

Each epoch writes a line to metrics.jsonl (G and D losses, mean D(x) and D(G(z)) on the
training batches and on validation digits, FID against the validation digits, IS of the same samples) and a grid of
samples from the same 100 noise vectors. At the end: samples.png, curves.png (D scores and
losses per epoch), nearest_neighbours.png (samples next to their closest training digits), and
results.json with the test FID, Inception Score and Parzen-window log-likelihood (sigma picked
on validation digits) of the epoch with the best validation FID (model selection on the
validation split; --patience stops early). FID and IS use scratchgen's MNIST classifier (99.0% test accuracy on full
MNIST), trained once and cached under ~/.cache/scratchgen/classifier/ (`python -m scratchgen.metrics`).
The same model trains through the command line: `scratchgen train gan`.

Data: $SCRATCHGEN_DATA if it holds MNIST, otherwise the subset bundled with scratchgen.
"""
import argparse
import contextlib
import json
import os
import time

import numpy as np

import scratchgen as sg
from scratchgen import metrics, optim, plots
from scratchgen.data import DataLoader, describe_mnist_source, load_mnist, to_symmetric
from scratchgen.models.gan import GAN, AdversarialOptimizer, HingeGAN, Discriminator, Generator, adversarial_curves, train_step
from scratchgen.models.infogan import InfoDiscriminator, InfoGAN
from scratchgen.checkpoint import load_checkpoint, save_checkpoint
from scratchgen.train import append_jsonl, seed_everything


def mnist(split, limit=None):
    """(N, 784) pixels in [-1, 1] and labels."""
    images, labels = load_mnist(split)
    return to_symmetric(images[:limit]).reshape(-1, 784), labels[:limit].astype(np.int64)


def parser(description):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--saturating", action="store_true", help="minimax generator loss log(1 - D(G(z)))")
    p.add_argument("--hinge", action="store_true",
                   help="the hinge loss of SN-GAN for both players: L_D = E relu(1 - D(x)) + E relu(1 + D(G(z))), "
                        "L_G = -E D(G(z))")
    p.add_argument("--n-critic", type=int, default=1,
                   help="D steps per G step (k of Algorithm 1); each sees --batch-size real digits")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="one-sided: real targets 1 - s")
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N digits")
    p.add_argument("--max-steps", type=int, default=None, help="at most N generator steps per epoch")
    p.add_argument("--eval-samples", type=int, default=5000, help="samples for FID / IS (0: skip them)")
    p.add_argument("--is-samples", type=int, default=50000,
                   help="samples for the final Inception Score in 10 splits (Salimans et al. 2016: 50,000; 0: skip); "
                        "test_inception_score uses the --eval-samples of the FID")
    p.add_argument("--parzen-samples", type=int, default=10000, help="samples for the Parzen window (0: skip)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after N epochs without a better validation FID (0: run every epoch)")
    p.add_argument("--d-dropout", type=float, default=0.0, help="dropout after D's hidden layers (0: none)")
    p.add_argument("--d-spectral-norm", action="store_true",
                   help="spectral normalisation of D's layers (Miyato et al. 2018)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="evaluate G with an exponential moving average of its weights, this decay (0: off)")
    p.add_argument("--lr-decay-start", type=int, default=0,
                   help="from this epoch on, decay both lrs linearly to zero at the last epoch (0: constant lr)")
    p.add_argument("--top-k-min", type=float, default=1.0,
                   help="top-k training (Sinha et al. 2020): G learns from the fraction max(top_k_min, "
                        "top_k_decay ** epoch) of its batch that D rates most realistic (1: all of it)")
    p.add_argument("--top-k-decay", type=float, default=0.99)
    p.add_argument("--info-codes", type=int, default=0,
                   help="InfoGAN (Chen et al. 2016): the last K of z's entries are a one-hot code that a Q head "
                        "on D must read back from G's samples (0: a plain GAN)")
    p.add_argument("--info-weight", type=float, default=1.0, help="InfoGAN's lambda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None,
                   help="continue from this checkpoint.npz (same options, larger --epochs): the epochs after its "
                        "epoch run; model selection is over those epochs")
    p.add_argument("--out", default="runs/gan_mnist")
    return p


def to_unit(x):
    return (np.clip(np.asarray(x), -1, 1) + 1) / 2


def draw(model, n, batch=1000):
    """n samples as pixels in [0, 1]; a conditional model gets labels 0..9 in turn."""
    out = []
    for i in range(0, n, batch):
        k = min(batch, n - i)
        labels = np.arange(i, i + k) % 10 if model.num_classes else None
        out.append(model.sample(k, labels).numpy())
    return to_unit(np.concatenate(out))


@sg.no_grad()
def discriminator_scores(model, x, y):
    """Mean D(x) on real digits and D(G(z)) on as many samples (D in eval mode: no dropout)."""
    y = y if model.num_classes else None
    fake = model(model.noise(len(x)), y)
    model.discriminator.eval()
    try:
        return model.readouts(model.critic(sg.tensor(x), y), model.critic(fake, y))
    finally:
        model.discriminator.train()


def resume(args, model, opt, ema, loader):
    """Load a checkpoint written by this script; return (the first epoch to run, the lr decay or None)."""
    ckpt = load_checkpoint(args.resume, model, opt)   # and the global RNG: the noise an uninterrupted run would draw
    done = ckpt["epoch"]
    if done >= args.epochs:
        raise SystemExit(f"{args.resume} is at epoch {done}: pass --epochs larger than that to continue")
    ema_state = (ckpt.get("extra") or {}).get("ema", ckpt.get("ema"))   # (older files kept it at the top)
    if ema and ema_state is None:
        raise SystemExit(f"--ema {args.ema} but {args.resume} has no moving average: resume without --ema")
    if ema:
        ema.load_state_dict(ema_state)
    loader.epoch = done                  # its shuffles depend on (seed, epoch) only
    if (ckpt.get("rng") or {}).get("global") is None:
        print(f"{args.resume} predates saved RNG states: the noise continues from a fresh seeded stream")
    decay = None
    if args.lr_decay_start and done >= args.lr_decay_start:  # where the decay of a run that never stopped is
        decay = optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=args.epochs - args.lr_decay_start + 1)
        for _ in range(done - args.lr_decay_start + 1):
            decay.step()
    print(f"resumed from {args.resume} after epoch {done}; lr {opt.param_groups[0]['lr']:.3g}")
    return done + 1, decay


def run(args, conditional=False, extra_eval=None):
    os.makedirs(args.out, exist_ok=True)
    print("data:", describe_mnist_source())
    seed_everything(args.seed)
    train_x, train_y = mnist("train", args.limit_train)
    valid_x, valid_y = mnist("valid")
    test_x, _ = mnist("test")
    k = 10 if conditional else 0

    if k and args.info_codes:
        raise SystemExit("--info-codes is for the unconditional GAN: the conditional one is told the class")
    G = Generator(args.latent_dim, (256, 256), 784, num_classes=k, activation="relu", output="tanh")
    if args.hinge and (args.saturating or args.label_smoothing or args.info_codes):
        raise SystemExit("--hinge replaces both losses: drop --saturating, --label-smoothing and --info-codes")
    if args.n_critic < 1:
        raise SystemExit(f"--n-critic must be at least 1, got {args.n_critic}")
    game = dict(label_smoothing=args.label_smoothing, generator_loss="saturating" if args.saturating else "non_saturating",
                n_critic=args.n_critic)
    if args.info_codes:   # the same D body and logit, plus Q's head of K logits on its last hidden layer
        D = InfoDiscriminator(784, (256, 256), codes=args.info_codes, activation="leaky_relu", dropout=args.d_dropout,
                              spectral_norm=args.d_spectral_norm)
        model = InfoGAN(G, D, args.latent_dim, codes=args.info_codes, info_weight=args.info_weight, **game)
    else:
        D = Discriminator(784, (256, 256), num_classes=k, activation="leaky_relu", dropout=args.d_dropout,
                          spectral_norm=args.d_spectral_norm)
        model = (HingeGAN(G, D, args.latent_dim, num_classes=k, n_critic=args.n_critic) if args.hinge
                 else GAN(G, D, args.latent_dim, num_classes=k, **game))
    betas = (args.beta1, 0.999)
    opt = AdversarialOptimizer(optim.Adam(G.parameters(), lr=args.lr, betas=betas),
                               optim.Adam(D.parameters(), lr=args.lr, betas=betas))
    print(model)
    ema = optim.EMA(G.parameters(), decay=args.ema) if args.ema else None
    averaged = ema.average_parameters if ema else contextlib.nullcontext   # G's weights for evaluation
    loader = DataLoader((train_x, train_y), batch_size=args.n_critic * args.batch_size, shuffle=True, seed=args.seed)
    fixed_z = model.noise(100)                     # the same noise for every epoch's picture
    fixed_y = np.repeat(np.arange(10), 10) if k else None
    fixed_z = sg.tensor(np.tile(fixed_z.numpy()[:10], (10, 1))) if k else fixed_z  # cGAN: rows = classes
    if args.info_codes:  # rows = codes, columns = the same noise
        z = model.noise(100, codes=np.repeat(np.arange(10) % args.info_codes, 10)).numpy()
        z[:, :-args.info_codes] = np.tile(z[:10, :-args.info_codes], (10, 1))
        fixed_z = sg.tensor(z)
    clf = metrics.mnist_classifier() if args.eval_samples else None
    log = os.path.join(args.out, "metrics.jsonl")
    if os.path.exists(log) and not args.resume:
        os.remove(log)
    first, decay = resume(args, model, opt, ema, loader) if args.resume else (1, None)

    best = {"fid": float("inf"), "epoch": args.epochs, "state": None}
    for epoch in range(first, args.epochs + 1):
        t0, sums, steps = time.perf_counter(), {}, 0
        model.top_k = max(args.top_k_min, args.top_k_decay ** (epoch - 1))
        for xb, yb in loader:
            stats = train_step(model, opt, xb, yb if k else None)
            if ema:
                ema.update()
            for key, v in stats.items():
                sums[key] = sums.get(key, 0.0) + v
            steps += 1
            if args.max_steps and steps >= args.max_steps:
                break
        record = {"epoch": epoch, "steps": steps, "train_loss": sums.pop("g_loss") / steps,
                  **{f"train_{key}": v / steps for key, v in sums.items()}}
        scores = discriminator_scores(model, valid_x[:1000], valid_y[:1000])
        record.update({f"valid_{key}": v for key, v in scores.items()})
        with averaged(), sg.no_grad():
            if clf is not None:   # the IS of the same samples: the FID picks the epoch, the IS is for the curves
                samples = draw(model, args.eval_samples)
                record["valid_fid"] = metrics.mnist_fid(samples, to_unit(valid_x), clf)
                record["valid_is"] = metrics.mnist_inception_score(samples, clf)[0]
            grid = to_unit(model(fixed_z, fixed_y).numpy())
            if clf is not None and record["valid_fid"] < best["fid"]:
                best = {"fid": record["valid_fid"], "epoch": epoch,
                        "state": {key: v.copy() for key, v in model.state_dict().items()}}
        record["lr"] = opt.param_groups[0]["lr"]
        record["top_k"] = model.top_k
        if args.lr_decay_start and epoch == args.lr_decay_start:  # both players' rates, linearly to 0
            decay = optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=args.epochs - epoch + 1)
        if decay:
            decay.step()  # the lr of the next epoch
        record["time_s"] = round(time.perf_counter() - t0, 2)
        append_jsonl(log, record)
        plots.image_grid(grid.reshape(-1, 28, 28), os.path.join(args.out, f"samples_epoch{epoch:03d}.png"), nrow=10)
        print(" ".join(f"{key} {v:.4f}" if isinstance(v, float) else f"{key} {v}" for key, v in record.items()),
              flush=True)
        if args.patience and epoch - best["epoch"] >= args.patience:
            break
    last_epoch = epoch

    save_checkpoint(os.path.join(args.out, "checkpoint.npz"), model, opt, epoch=last_epoch,
                    extra={"ema": ema.state_dict()} if ema else None)
    if best["state"] is not None:  # model selection: the epoch with the best validation FID (its G averaged with --ema)
        model.load_state_dict(best["state"])
    elif ema:
        ema.copy_to()
    results = {"epochs": last_epoch, "best_epoch": best["epoch"], "best_valid_fid": best["fid"],
               "ema_decay": args.ema, "info_codes": args.info_codes, "data": describe_mnist_source()}
    if clf is not None:
        samples = draw(model, args.eval_samples)
        results["test_fid"] = metrics.mnist_fid(samples, to_unit(test_x), clf)
        score, std = metrics.mnist_inception_score(samples, clf)
        results["test_inception_score"], results["test_inception_score_std"] = score, std
        results["real_test_inception_score"] = metrics.mnist_inception_score(to_unit(test_x), clf)[0]
        results["classifier_test_acc"] = clf.meta["test_acc"]
    if args.parzen_samples:
        parzen = metrics.parzen_window(draw(model, args.parzen_samples), to_unit(valid_x), to_unit(test_x))
        results.update(test_parzen_ll=parzen["mean"], test_parzen_sem=parzen["sem"], parzen_sigma=parzen["sigma"],
                       parzen_samples=args.parzen_samples)
    if clf is not None and args.is_samples:   # Salimans et al.'s protocol: 50,000 samples in 10 splits
        score, std = metrics.mnist_inception_score(draw(model, args.is_samples), clf)
        results["test_is"] = {"samples": args.is_samples, "splits": 10, "mean": score, "std": std}
    if extra_eval is not None:
        results.update(extra_eval(model, clf))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))

    with sg.no_grad():
        final = to_unit(model(fixed_z, fixed_y).numpy())
    plots.image_grid(final.reshape(-1, 28, 28), os.path.join(args.out, "samples.png"), nrow=10,
                     title=("rows: labels 0-9, columns: the same z" if k else
                            "rows: the code c, columns: the same noise" if args.info_codes else "samples"))
    adversarial_curves(log, os.path.join(args.out, "curves.png"), title=os.path.basename(args.out))
    metrics.nearest_neighbour_grid(draw(model, 10), to_unit(train_x), os.path.join(args.out, "nearest_neighbours.png"),
                                   k=5, title="samples (left) and their 5 nearest training digits")
    print(f"wrote {args.out}/: metrics.jsonl, samples_epoch*.png, samples.png, curves.png, "
          f"nearest_neighbours.png, results.json, checkpoint.npz")
    return results


if __name__ == "__main__":
    run(parser(__doc__).parse_args())
