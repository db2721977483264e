"""Train a conditional MLP GAN (Mirza & Osindero, 2014) on MNIST: G(z | y) and D(x | y), the
label y one-hot and concatenated to the inputs of both players.

    python examples/cgan_mnist.py --epochs 100 --out runs/cgan_mnist               # the full run
    python examples/cgan_mnist.py --epochs 2 --max-steps 100 --limit-train 5000 \\
        --eval-samples 1000 --parzen-samples 1000 --out runs/cgan_smoke             # a smoke test

Everything else is examples/gan_mnist.py (same networks, plus 10 inputs each; same optimizer
and outputs). samples.png has one row per label and one column per noise vector z, so each
column shows one "style" written as every digit. results.json adds `label_accuracy`: the
fraction of samples G(z | y) that the MNIST classifier assigns to the class y they were asked
for. The same model trains through the command line: `scratchgen train cgan`.
"""
import numpy as np

from gan_mnist import draw, parser, run


def label_accuracy(model, classifier, n=5000):
    """How often the classifier reads the requested digit in G(z | y), labels 0..9 in turn."""
    if classifier is None:
        return {}
    samples = draw(model, n)                   # draw() cycles the labels 0..9
    predicted = classifier.probs(samples).argmax(axis=1)
    return {"label_accuracy": float((predicted == np.arange(n) % 10).mean()), "label_accuracy_samples": n}


if __name__ == "__main__":
    p = parser(__doc__)
    p.set_defaults(out="runs/cgan_mnist")
    args = p.parse_args()
    run(args, conditional=True,
        extra_eval=lambda model, clf: label_accuracy(model, clf, max(args.eval_samples, 10)))
