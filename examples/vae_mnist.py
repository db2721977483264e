"""Train a VAE (Kingma & Welling 2014) on binarized MNIST; report the test ELBO and the
importance-weighted (IWAE, Burda et al. 2016) estimate of the test NLL, and draw the usual pictures.

    python examples/vae_mnist.py --out runs/vae                         # 784-500-500-50, k = 5000
    python examples/vae_mnist.py --latent 2 --out runs/vae-2d           # + the 2-D latent manifold
    python examples/vae_mnist.py --likelihood gaussian --sigma 0.1 ...  # grayscale MNIST in [0, 1]
    python examples/vae_mnist.py --epochs 1 --limit-train 2000 --iwae-k 50 --out /tmp/vae   # smoke test

Data (--binarization): 'fixed' is Larochelle's binarized MNIST (50k/10k/10k, the benchmark of the
VAE/IWAE literature); 'dynamic' binarizes MNIST afresh every batch, with one fixed draw for
validation and test (works offline on the bundled MNIST subset); 'auto' (default) uses the fixed
set when its files are there, else says so and uses dynamic. --likelihood gaussian trains on the
grayscale intensities instead.

The validation ELBO picks the best epoch (early stopping, best.npz); the test set is scored once
at the end. Writes to --out: metrics.jsonl, checkpoint.npz, best.npz, results.json, and
    samples.png          decoder means E[x|z] for z ~ N(0, I)
    reconstructions.png  test digits, then E[x|z] at z = mu(x)
    interpolations.png   E[x|z] along straight lines between the codes mu(x) of two test digits
    latent_scatter.png   codes mu(x) of MNIST test digits, coloured by label (PCA to 2-D if latent > 2).
                         The binarized set has no labels, so these digits are MNIST's own test images
                         (with labels, via load_mnist), binarized by a fixed Bernoulli draw
    manifold.png         (--latent 2) E[x|z] on a 20x20 grid of z = Phi^-1(quantiles) (K&W Fig. 4)
    curves.png           train and validation ELBO, and the KL term, per epoch
"""
import argparse
import json
import os
import time

import numpy as np

import scratchgen as sg
from scratchgen.data import DataLoader, describe_mnist_source, load_mnist, to_unit
from scratchgen.models.vae import VAE, evaluate_elbo, evaluate_iwae, load_split
from scratchgen.models.vae_pictures import draw_vae_pictures
from scratchgen.plots import curves
from scratchgen.train import EarlyStopping, fit, seed_everything


def choose_data(args):
    """(train, valid, test, description, dynamic) for the arguments."""
    mode = args.binarization
    if args.likelihood == "gaussian":
        mode = "dynamic"  # unused for the Gaussian likelihood: intensities in [0, 1]
    elif mode == "auto":
        try:
            sg.data.load_binarized_mnist("test")
            mode = "fixed"
        except FileNotFoundError:
            print("note: binarized MNIST (Larochelle's fixed binarization) not found; using dynamically "
                  "binarized MNIST instead (`scratchgen data download binarized_mnist` for the benchmark)")
            mode = "dynamic"
    splits = [load_split(s, args.likelihood, mode) for s in ("train", "valid", "test")]
    if args.likelihood == "gaussian":
        desc = f"{describe_mnist_source()}, grayscale in [0, 1]"
    elif mode == "fixed":
        desc = f"binarized MNIST (Larochelle's fixed binarization) from {sg.data.data_root()}"
    else:
        desc = f"{describe_mnist_source()}, dynamically binarized (fixed draw for valid/test)"
    return splits[0], splits[1], splits[2], desc, args.likelihood == "bernoulli" and mode == "dynamic"


def labelled_test_digits(args, n):
    """MNIST test digits with their labels, prepared as the model's inputs (see the docstring)."""
    images, labels = load_mnist("test")
    x = to_unit(images[:n]).reshape(-1, 784).astype(np.float32)
    if args.likelihood == "bernoulli":
        x = (np.random.default_rng(12345).random(x.shape) < x).astype(np.float32)
    return x, labels[:n]


def draw_pictures(model, args, test, out):
    return draw_vae_pictures(model, test, labelled_test_digits(args, 5000), out, seed=args.seed)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    p.add_argument("--latent", type=int, default=50)
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian"], default="bernoulli")
    p.add_argument("--sigma", type=float, default=None, help="Gaussian decoder's std (default: learned)")
    p.add_argument("--kl", choices=["analytic", "mc"], default="analytic", help="SGVB estimator B or A")
    p.add_argument("--beta", type=float, default=1.0, help="weight of the KL term in training")
    p.add_argument("--warmup-steps", type=int, default=0, help="KL warm-up: beta from 0 to --beta over N steps")
    p.add_argument("--activation", choices=["relu", "tanh", "softplus", "elu"], default="relu")
    p.add_argument("--binarization", choices=["auto", "fixed", "dynamic"], default="auto")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=30, help="epochs without a better validation ELBO")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--iwae-k", type=int, default=5000, help="importance samples for the test NLL (0: skip)")
    p.add_argument("--iwae-batch", type=int, default=None, help="importance samples per chunk (memory)")
    p.add_argument("--iwae-examples", type=int, default=None, help="score only the first N test digits")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/vae")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    seed_everything(args.seed)

    train, valid, test, source, dynamic = choose_data(args)
    if args.limit_train:
        train = train[:args.limit_train]
    print(f"data: {source} ({len(train)}/{len(valid)}/{len(test)})")
    model = VAE(784, args.hidden, args.latent, likelihood=args.likelihood, sigma=args.sigma, kl=args.kl,
                beta=args.beta, warmup_steps=args.warmup_steps, activation=args.activation)
    if args.device != "cpu":
        model.to(args.device)
    print(model)
    optimizer = sg.optim.Adam(model.parameters(), lr=args.lr)
    loader = DataLoader((train,), batch_size=args.batch_size, shuffle=True, seed=args.seed)
    noise = np.random.default_rng(args.seed + 1)

    def loss_fn(model, batch):
        x, = batch
        if dynamic:  # a fresh binarization of every batch
            x = (noise.random(x.shape) < x.numpy()).astype(np.float32)
        return model.training_loss(x)

    start = time.time()
    result = fit(model, optimizer, loader, loss_fn, args.epochs,
                 valid_fn=lambda m: {"valid_elbo": evaluate_elbo(m, valid)},
                 metrics_path=os.path.join(args.out, "metrics.jsonl"),
                 early_stopping=EarlyStopping("valid_elbo", "max", patience=args.patience or None),
                 checkpoint_dir=args.out, device=None if args.device == "cpu" else args.device)
    train_time = time.time() - start
    model.eval()

    results = {"data": source, "test_elbo": evaluate_elbo(model, test), "best_valid_elbo": result.best_metric,
               "best_epoch": result.best_epoch, "epochs_run": result.last_epoch,
               "train_time_s": round(train_time, 1)}
    if args.iwae_k > 0:
        scored = test[:args.iwae_examples] if args.iwae_examples else test
        t0 = time.time()
        results["test_nll_iwae"] = -evaluate_iwae(model, scored, k=args.iwae_k, batch=args.iwae_batch, progress=True)
        results.update(iwae_k=args.iwae_k, iwae_examples=len(scored), iwae_time_s=round(time.time() - t0, 1))
        if len(scored) < len(test):  # the ELBO on the same digits, for a like-for-like gap
            results["test_elbo_same_examples"] = evaluate_elbo(model, scored)
    results["config"] = vars(args)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)

    pictures = draw_pictures(model, args, test, args.out)
    pictures["curves"] = curves(os.path.join(args.out, "metrics.jsonl"), os.path.join(args.out, "curves.png"),
                                ["train_elbo", "valid_elbo", "train_kl"])
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))
    line = f"test ELBO {results['test_elbo']:.2f} nats"
    if "test_nll_iwae" in results:
        line += f", test NLL (IWAE, k={args.iwae_k}) {results['test_nll_iwae']:.2f} nats"
    print(f"{line}; best epoch {result.best_epoch} of {result.last_epoch}, {train_time / 60:.1f} min")
    print("wrote " + ", ".join(os.path.basename(p) for p in pictures.values()) + f" to {args.out}")


if __name__ == "__main__":
    main()
