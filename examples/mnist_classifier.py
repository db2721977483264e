"""Train an MLP on MNIST with the library directly: what `scratchgen train mlp` does, spelled out.

    python examples/mnist_classifier.py [--epochs 10] [--out runs/example-mlp] [--limit-train N]

On a busy machine, start it with OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 (what the CLI does
for this model): spinning BLAS threads on shared cores slow training down several times.

Data: $SCRATCHGEN_DATA if it holds MNIST, otherwise the small subset bundled with scratchgen.
Train on 'train' (with random affine augmentation), pick the epoch with the best validation
loss, report 'test' once.
"""
import argparse
import os

import numpy as np

import scratchgen as sg
from scratchgen import nn, optim, plots
from scratchgen.data import DataLoader, describe_mnist_source, load_mnist
from scratchgen.models.mlp_classifier import random_affine
from scratchgen.random import rng
from scratchgen.train import EarlyStopping, fit, seed_everything


def mnist(split, limit=None):
    images, labels = load_mnist(split)  # uint8 (N, 28, 28), int64 (N,)
    x = images[:limit].reshape(-1, 784).astype(np.float32) / np.float32(255)
    return x, labels[:limit].astype(np.int64)


def accuracy_and_loss(model, x, y):
    model.eval()
    with sg.no_grad():
        logits = model(sg.tensor(x))
        loss = sg.cross_entropy(logits, y).item()
    model.train()
    return float((logits.numpy().argmax(axis=1) == y).mean()), loss


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--out", default="runs/example-mlp")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print("data:", describe_mnist_source())

    seed_everything(args.seed)
    train_x, train_y = mnist("train", args.limit_train)
    valid_x, valid_y = mnist("valid")
    test_x, test_y = mnist("test")

    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    loader = DataLoader((train_x, train_y), batch_size=args.batch_size, shuffle=True, seed=args.seed)

    def loss_fn(model, batch):
        x, y = batch
        x = sg.tensor(random_affine(x.numpy(), rng()))  # rotate, scale, shift: fresh every epoch
        return sg.cross_entropy(model(x), y)

    def valid_fn(model):
        acc, loss = accuracy_and_loss(model, valid_x, valid_y)
        return {"valid_loss": loss, "valid_acc": acc}

    result = fit(model, optimizer, loader, loss_fn, args.epochs, valid_fn=valid_fn,
                 metrics_path=os.path.join(args.out, "metrics.jsonl"),
                 early_stopping=EarlyStopping("valid_loss", "min", patience=10),
                 checkpoint_dir=args.out, scheduler=scheduler)

    # fit() left the best epoch's weights in the model: evaluate on test, once.
    test_acc, test_loss = accuracy_and_loss(model, test_x, test_y)
    print(f"best epoch {result.best_epoch}: valid_loss {result.best_metric:.4f}; "
          f"test_acc {test_acc:.4f}, test_loss {test_loss:.4f}")

    plots.curves(os.path.join(args.out, "metrics.jsonl"), os.path.join(args.out, "curves.png"))
    with sg.no_grad():
        model.eval()
        pred = model(sg.tensor(test_x[:40])).numpy().argmax(axis=1)
    titles = [f"{p}" if p == t else f"!{p} ({t})" for p, t in zip(pred, test_y[:40])]
    plots.image_grid(test_x[:40].reshape(-1, 28, 28), os.path.join(args.out, "samples.png"), nrow=10,
                     titles=titles)
    print(f"wrote {args.out}/: metrics.jsonl, checkpoint.npz, best.npz, curves.png, samples.png")


if __name__ == "__main__":
    main()
