"""Train NICE on dequantized MNIST; report the test log-likelihood in nats and bits/dim.

    python examples/nice_mnist.py --epochs 20 --out runs/nice
    python examples/nice_mnist.py --coupling affine ...     # RealNVP affine coupling
    python examples/nice_mnist.py --scale-init data --ema 0.9995 --epochs 1500 --patience 0 --out runs/n
    python examples/nice_mnist.py ... --resume --out runs/n                # continue runs/n/checkpoint.npz
    python examples/nice_mnist.py --evaluate runs/n/best.npz --out runs/n  # score a saved run again
    python examples/nice_mnist.py --optimizer rmsprop --init-range 0.01 --lr-decay 1.0005 --min-lr 1e-4 \
        --scale-init data ...                               # the authors' released recipe (+ the data start)

Data: x = (pixel + u) / 256 with u ~ U[0, 1) (fresh noise every epoch for training; one
fixed draw for validation and test). The log-likelihood is the density of x in [0, 1]^784;
bits/dim of the 8-bit data = (-LL + 784 log 256) / (784 log 2)  (see models.nice.bits_per_dim).
Paper set-up (Dinh et al. 2014): 4 additive couplings, 5x1000 ReLU each, logistic prior,
Adam(lr 1e-3, "momentum 0.9, beta2 0.01", eps 1e-4). The paper uses the early Adam drafts'
notation, where beta is one minus the decay rate, so that is betas=(0.9, 0.99) here; read
literally, betas=(0.9, 0.01) diverges. Validation picks the best epoch; test is scored once.
"""
import argparse
import json
import os
import time

import numpy as np

import scratchgen as sg
from scratchgen.checkpoint import load_checkpoint
from scratchgen.data import DataLoader, dequantize, describe_mnist_source, load_mnist
from scratchgen.models.nice import NICE, bits_per_dim
from scratchgen.plots import curves, image_grid
from scratchgen.train import EarlyStopping, fit, resume, seed_everything


def flat(images):
    return images.reshape(len(images), -1)


def log_likelihood(model, x, batch=1000, device="cpu"):
    with sg.no_grad():
        return sum(float(model.log_prob(sg.tensor(x[i:i + batch]).to(device)).sum().item())
                   for i in range(0, len(x), batch)) / len(x)


MOMENTUM, MOMENTUM_START = 0.5, 5   # the authors' MomentumAdjustor: 0 for 5 epochs, then 0.5


def make_optimizer(name, params, lr):
    """The paper's Adam (its "beta2 0.01" is a decay of 0.99 in today's notation) or the RMSProp with
    momentum of the authors' code (there the rms is floored at 1e-2; PyTorch's form adds eps instead)."""
    if name == "rmsprop":
        return sg.optim.RMSprop(params, lr=lr, alpha=0.95, eps=1e-2, momentum=0.0)
    return sg.optim.Adam(params, lr=lr, betas=(0.9, 0.99), eps=1e-4)


def evaluate_checkpoint(model, path, valid, test, args):
    ckpt = load_checkpoint(path, model, restore_rng=False)
    valid_ll, test_ll = (log_likelihood(model, x, device=args.device) for x in (valid, test))
    results = {"checkpoint": path, "epoch": ckpt["epoch"], "valid_ll": valid_ll, "test_ll_nats": test_ll,
               "test_bits_per_dim": bits_per_dim(test_ll)}
    print(json.dumps(results, indent=2))
    with open(os.path.join(args.out, "evaluation.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--couplings", type=int, default=4)
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--hidden-layers", type=int, default=5)
    p.add_argument("--coupling", choices=["additive", "affine"], default="additive")
    p.add_argument("--prior", choices=["logistic", "gaussian"], default="logistic")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=1.0,
                   help="divide the lr by this every update, down to --min-lr (the authors' code: 1.0005, 1e-4; "
                        "applied per epoch as lr / decay**(updates so far)); 1: constant")
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--patience", type=int, default=20, help="epochs without a better valid LL (0: never stop)")
    p.add_argument("--scale-init", choices=["zeros", "data"], default="zeros",
                   help="S = 0 (the paper), or S fitted to the prior's second moment on 1,000 training digits "
                        "(NICE.initialize_scale)")
    p.add_argument("--optimizer", choices=["adam", "rmsprop"], default="adam",
                   help="adam: the paper's text; rmsprop: the authors' released code (RMSProp, averaging 0.95, "
                        "eps 1e-2, momentum 0 for %d epochs, then %.1f)" % (MOMENTUM_START, MOMENTUM))
    p.add_argument("--init-range", type=float, default=None,
                   help="coupling weights from U(-r, r), biases 0 (the authors' code: 0.01); default: nn.Linear's init")
    p.add_argument("--ema", type=float, default=0.0,
                   help="validate, select and test an exponential moving average of the weights with this decay "
                        "(e.g. 0.9995; 0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (CuPy)")
    p.add_argument("--max-time", type=float, default=None, help="stop after the epoch that ends past this many seconds")
    p.add_argument("--evaluate", metavar="CKPT", default=None,
                   help="no training: score a saved checkpoint (e.g. OUT/best.npz of a stopped run) on the "
                        "validation and test sets, with the same noise draws as training runs use")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.npz (weights, optimizer, schedule, weight "
                        "averages, best epoch) up to --epochs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    p.add_argument("--out", default="runs/nice")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)

    print("data:", describe_mnist_source())
    train_u8 = flat(load_mnist("train")[0])
    valid = dequantize(flat(load_mnist("valid")[0]), rng)
    test = dequantize(flat(load_mnist("test")[0]), rng)
    model = NICE(784, args.couplings, args.hidden, args.hidden_layers, args.prior, args.coupling)
    if args.init_range is not None:
        model.uniform_init_(args.init_range)
    model = model.to(args.device)
    if args.evaluate:
        return evaluate_checkpoint(model, args.evaluate, valid, test, args)
    print(model)
    if args.scale_init == "data" and not args.resume:   # a resumed run loads S with the rest
        model.initialize_scale(sg.tensor(dequantize(train_u8[:1000], rng)).to(args.device))
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr)
    ema = sg.optim.EMA(model.parameters(), decay=args.ema) if args.ema else None
    loader = DataLoader((train_u8,), batch_size=args.batch_size, shuffle=True, seed=args.seed)
    scheduler = None
    if args.lr_decay != 1.0:
        floor = args.min_lr / args.lr
        scheduler = sg.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: max(args.lr_decay ** -(epoch * len(loader)), floor))
    early_stopping = EarlyStopping("valid_ll", "max", patience=args.patience or None)
    start_epoch = resume(args.out, model, optimizer, scheduler, loader, early_stopping, ema) if args.resume else 0
    if args.resume:
        print(f"resumed {args.out} after epoch {start_epoch} (best valid LL so far {early_stopping.best})")
    # the same stream as the torch twin's; a resumed run draws fresh noise (its generator is not checkpointed)
    noise = np.random.default_rng([args.seed + 1, start_epoch] if start_epoch else args.seed + 1)

    def loss_fn(model, batch):
        if args.optimizer == "rmsprop":  # loader.epoch: the 1-based epoch in progress
            optimizer.param_groups[0]["momentum"] = MOMENTUM if loader.epoch > MOMENTUM_START else 0.0
        x = sg.tensor(dequantize(batch[0].numpy(), noise)).to(args.device)  # fresh dequantization noise
        return -model.log_prob(x).mean()

    start = time.time()
    result = fit(model, optimizer, loader, loss_fn, args.epochs,
                 valid_fn=lambda m: {"valid_ll": log_likelihood(m, valid, device=args.device)},
                 metrics_path=os.path.join(args.out, "metrics.jsonl"),
                 early_stopping=early_stopping, start_epoch=start_epoch,
                 checkpoint_dir=args.out, scheduler=scheduler, ema=ema, max_time=args.max_time, progress=not args.no_progress)
    train_time = time.time() - start
    test_ll = log_likelihood(model, test, device=args.device)
    results = {"test_ll_nats": test_ll, "test_bits_per_dim": bits_per_dim(test_ll),
               "best_valid_ll": result.best_metric, "best_epoch": result.best_epoch,
               "epochs_run": result.last_epoch, "train_time_s": round(train_time, 1), "config": vars(args)}
    print(json.dumps(results, indent=2))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    samples = np.clip(model.sample(64).numpy(), 0, 1).reshape(64, 28, 28)
    image_grid(samples, os.path.join(args.out, "samples.png"), nrow=8)
    curves(os.path.join(args.out, "metrics.jsonl"), os.path.join(args.out, "curves.png"), ["train_loss", "valid_ll"])
    print(f"test log-likelihood {test_ll:.1f} nats = {bits_per_dim(test_ll):.3f} bits/dim "
          f"(best epoch {result.best_epoch}, {train_time / 60:.1f} min)")


if __name__ == "__main__":
    main()
