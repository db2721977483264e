"""Train MADE on binarized MNIST (Larochelle split) and report the exact test NLL in nats.

    python examples/made_mnist.py --hidden 500 --epochs 100 --out runs/made
    python examples/made_mnist.py --hidden 8000 --num-masks 32 --natural-ordering 0 ...

Validation NLL picks the best epoch (early stopping); the test set is scored once, at the end.
The same model trains through the command line: `scratchgen train made`.
"""
import argparse
import json
import math
import os
import time

import scratchgen as sg
from scratchgen.data import DataLoader, load_binarized_mnist
from scratchgen.models.made import MADE
from scratchgen.plots import curves, image_grid
from scratchgen.train import EarlyStopping, fit, seed_everything


def nll(model, x, num_masks=None, batch=1000):
    """Average negative log-likelihood in nats, under no_grad."""
    with sg.no_grad():
        total = sum(float(model.log_prob(x[i:i + batch], num_masks).sum().item()) for i in range(0, len(x), batch))
    return -total / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[500])
    p.add_argument("--num-masks", type=int, default=1)
    p.add_argument("--resample-every", type=int, default=1, help="training steps between mask changes")
    p.add_argument("--natural-ordering", type=int, default=1)
    p.add_argument("--direct", type=int, default=0, help="direct input-to-output connection")
    p.add_argument("--init", choices=["default", "orthogonal"], default="default",
                   help="orthogonal: orthogonal weights and zero biases, as the original MADE code")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--optimizer", choices=["adam", "adamw", "adagrad"], default="adam",
                   help="adamw: decoupled weight decay; adagrad: the original MADE code's optimizer "
                        "(use a larger --lr, e.g. 0.01)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty (1e-4 regularises Adam well)")
    p.add_argument("--lr-step", type=int, default=0, help="multiply the lr by 0.1 every N epochs (0: never)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="evaluate an exponential moving average of the weights with this decay (e.g. 0.999)")
    p.add_argument("--patience", type=int, default=15)
    p.add_argument("--test-masks", type=int, default=None, help="masks in the test-time ensemble")
    p.add_argument("--valid-masks", type=int, default=1,
                   help="masks in the per-epoch validation ensemble (the first ones, so epochs compare)")
    p.add_argument("--max-time", type=float, default=None, help="stop after the epoch that ends past this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="keep the best weights in memory only (checkpoints of 8000-unit layers cost seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (CuPy)")
    p.add_argument("--out", default="runs/made")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    seed_everything(args.seed)

    train, valid, test = (load_binarized_mnist(s) for s in ("train", "valid", "test"))
    print(f"data: binarized MNIST from {sg.data.data_root()} ({len(train)}/{len(valid)}/{len(test)})")
    model = MADE(784, args.hidden, num_masks=args.num_masks, natural_ordering=bool(args.natural_ordering),
                 direct_connection=bool(args.direct), seed=args.seed)
    if args.init == "orthogonal":
        for layer in model.layers:
            sg.nn.init.orthogonal_(layer.weight)
            sg.nn.init.zeros_(layer.bias)
    model.to(args.device)
    print(model)
    make = {"adam": sg.optim.Adam, "adamw": sg.optim.AdamW, "adagrad": sg.optim.Adagrad}[args.optimizer]
    optimizer = make(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = sg.optim.lr_scheduler.StepLR(optimizer, args.lr_step, gamma=0.1) if args.lr_step else None
    ema = sg.optim.EMA(model.parameters(), decay=args.ema) if args.ema else None
    loader = DataLoader((train,), batch_size=args.batch_size, shuffle=True, seed=args.seed)
    steps = [0]

    def loss_fn(model, batch):
        x, = batch
        steps[0] += 1
        if model.num_masks > 1 and steps[0] % args.resample_every == 0:
            model.next_mask()
        return -model.log_prob_one_mask(x).mean()

    # Validation uses the first --valid-masks masks (cheap, and the same every epoch); the full
    # ensemble is for the test.
    start = time.time()
    result = fit(model, optimizer, loader, loss_fn, args.epochs,
                 valid_fn=lambda m: {"valid_nll": nll(m, valid, num_masks=args.valid_masks)},
                 metrics_path=os.path.join(args.out, "metrics.jsonl"),
                 early_stopping=EarlyStopping("valid_nll", "min", patience=args.patience or None),
                 checkpoint_dir=None if args.no_checkpoint else args.out, scheduler=scheduler,
                 device=args.device, ema=ema, max_time=args.max_time, progress=not args.no_progress)
    train_time = time.time() - start

    test_masks = args.test_masks or args.num_masks
    results = {"test_nll_one_mask": nll(model, test, num_masks=1), "best_valid_nll": result.best_metric,
               "best_epoch": result.best_epoch, "epochs_run": result.last_epoch,
               "train_time_s": round(train_time, 1), "config": vars(args)}
    if test_masks > 1:
        results[f"test_nll_{test_masks}_masks"] = nll(model, test, num_masks=test_masks)
    print(json.dumps(results, indent=2))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    image_grid(model.sample(64).numpy().reshape(64, 28, 28), os.path.join(args.out, "samples.png"), nrow=8)
    curves(os.path.join(args.out, "metrics.jsonl"), os.path.join(args.out, "curves.png"), ["train_loss", "valid_nll"])
    print(f"test NLL: {results['test_nll_one_mask']:.2f} nats (best epoch {result.best_epoch}, "
          f"{train_time / 60:.1f} min); bits/dim {results['test_nll_one_mask'] / (784 * math.log(2)):.4f}")


if __name__ == "__main__":
    main()
