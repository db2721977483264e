"""Why a GAN's MNIST Inception Score is what it is: IS = exp(H(y) - E_x H(y|x)), so split it into
the class balance exp(H(y)) (10 at best) and the classifier's confidence exp(-E H(y|x)) (1 at
best), for samples and for real test digits, and sweep the truncation z * psi.

    SCRATCHGEN_DATA=../shared/data python bench/gan_is_breakdown.py runs/gan_mnist/checkpoint.npz

Reads the checkpoint.npz of examples/gan_mnist.py (the last epoch's G, its EMA when there is one).
"""
import argparse

import numpy as np

import scratchgen as sg
from scratchgen import metrics, optim
from scratchgen.data import load_mnist
from scratchgen.models.gan import Generator


def entropy(p):
    return -(p * np.log(p + 1e-12)).sum(-1)


def breakdown(probs):
    marginal = probs.mean(0)
    return {"IS": metrics.inception_score(probs)[0], "exp_H_y": float(np.exp(entropy(marginal))),
            "exp_minus_E_H_y_given_x": float(np.exp(-entropy(probs).mean())),
            "max_prob_above_0.9": float((probs.max(1) > 0.9).mean()),
            "class_histogram": np.bincount(probs.argmax(1), minlength=10).tolist()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--psi", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.5])
    p.add_argument("--info-codes", type=int, default=0,
                   help="an InfoGAN checkpoint (examples/gan_mnist.py --info-codes K): the last K entries of z "
                        "are a one-hot code, drawn uniformly and never truncated")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    ckpt = sg.load(args.checkpoint)
    G = Generator(args.latent_dim, (256, 256), 784, activation="relu", output="tanh")
    G.load_state_dict({k[len("generator."):]: v for k, v in ckpt["model"].items() if k.startswith("generator.")})
    ema_state = (ckpt.get("extra") or {}).get("ema", ckpt.get("ema"))   # (older files kept it at the top)
    if ema_state is not None:
        ema = optim.EMA(G.parameters())
        ema.load_state_dict(ema_state)
        ema.copy_to()
    clf = metrics.mnist_classifier()
    print("real test digits:", breakdown(clf.probs(load_mnist("test")[0])))
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.samples, args.latent_dim)).astype(np.float32)
    scale = np.ones(args.latent_dim, np.float32)
    if args.info_codes:
        z[:, -args.info_codes:] = np.eye(args.info_codes, dtype=np.float32)[rng.integers(0, args.info_codes, args.samples)]
    for psi in args.psi:
        scale[:args.latent_dim - args.info_codes] = psi
        with sg.no_grad():
            x = (np.clip(G(sg.tensor(z * scale)).numpy(), -1, 1) + 1) / 2
        probs = clf.probs(x)
        extra = {}
        if args.info_codes:   # how far the code has become the digit: the majority class's share within each code
            codes, classes = z[:, -args.info_codes:].argmax(1), probs.argmax(1)
            extra["code_purity"] = float(sum(np.bincount(classes[codes == c], minlength=10).max()
                                             for c in range(args.info_codes) if (codes == c).any()) / len(z))
        print(f"samples, z * {psi}: FID(test) {metrics.mnist_fid(x, 'test', clf):.2f}", breakdown(probs), extra)


if __name__ == "__main__":
    main()
