"""Distil trained MADEs (the teacher) into a smaller MADE (the student) on binarized MNIST.

The student is trained on the teacher's conditionals instead of the bare training pixels:

    loss(x) = sum_d  BCE( student logit_d(x),  q_d(x) ),   q_d(x) = p_teacher(x_d = 1 | x_<d)

which is the cross-entropy of each teacher conditional under the student's, so minimising it
minimises sum_d KL(q_d || p_student,d) on the training images (Hinton et al. 2015's soft
targets). With --hard-weight a the target is a * x_d + (1 - a) * q_d.

The teacher may be several runs that share the student's ordering: their mixture
p(x) = sum_k pi_k p_k(x) has the exact conditionals

    q_d(x) = sum_k w_k(x_<d) sigmoid(logit_k,d(x)),   w_k(x_<d) ∝ pi_k p_k(x_<d).

The teachers overfit (3000 units: 80.8 nats on the training images, 87.7 on the test), so
their conditionals on the training images pass on what they memorised; --teacher-samples N adds
N images drawn from the teachers, with the teachers' conditionals as their targets.

Each TEACHER is the --out folder of an examples/made_mnist.py run. Targets are computed once,
from the training split only; validation picks the student's best epoch and the test set is
scored once, as in made_mnist.py.

    python examples/made_distill.py runs/made_big_a runs/made_big_b --hidden 500 --out runs/made_distill
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

import scratchgen as sg
from scratchgen.data import DataLoader, load_binarized_mnist
from scratchgen.losses import binary_cross_entropy_with_logits
from scratchgen.models import MADE
from scratchgen.plots import curves, image_grid
from scratchgen.random import rng
from scratchgen.train import EarlyStopping, fit, seed_everything

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from made_mixture import load_run  # noqa: E402
from made_mnist import nll  # noqa: E402


@sg.no_grad()
def teacher_probs(teachers, weights, x, batch=1000):
    """q[n, d] = p(x_d = 1 | x_<d) under the mixture sum_k weights_k p_k, float32 (N, D)."""
    ordering = teachers[0].ordering
    for t in teachers[1:]:
        if not np.array_equal(t.ordering, ordering):
            raise ValueError("the teachers must share one ordering, for their mixture to have tractable "
                             "conditionals in it; drop the runs trained with another ordering")
    log_pi = np.log(np.asarray(weights, dtype=np.float64) / np.sum(weights))[:, None, None]
    out = np.empty(x.shape, dtype=np.float32)
    for i in range(0, len(x), batch):
        xb = sg.tensor(x[i:i + batch])
        logits = [t(xb) for t in teachers]
        log_cond = np.stack([-binary_cross_entropy_with_logits(z, xb, reduction="none").numpy()
                             for z in logits]).astype(np.float64)                          # (K, n, D)
        # log p_k(x_<d): the log-conditionals of the dimensions generated before d.
        in_order = log_cond[:, :, ordering]
        prefix = np.zeros_like(in_order)
        prefix[:, :, 1:] = np.cumsum(in_order[:, :, :-1], axis=2)
        log_w = np.empty_like(prefix)
        log_w[:, :, ordering] = prefix
        log_w += log_pi
        log_w -= log_w.max(axis=0, keepdims=True)
        w = np.exp(log_w)
        w /= w.sum(axis=0, keepdims=True)
        out[i:i + batch] = (w * np.stack([z.sigmoid().numpy() for z in logits])).sum(axis=0)
    return out


@sg.no_grad()
def sample_one_layer(made, n, generator=None):
    """MADE.sample for a one-hidden-layer MADE in O(D H) per image rather than O(D^2 H): the hidden
    pre-activations a = b + W x_<d gain one column of W per generated pixel, and output d reads
    only units of degree < d, whose inputs are all in already. Same uniforms, same images (CPU)."""
    if len(made.hidden_sizes) != 1 or made.num_masks != 1:
        raise ValueError(f"sample_one_layer needs one hidden layer and one mask, got hidden sizes "
                         f"{made.hidden_sizes} and {made.num_masks} masks: use MADE.sample")
    first, last = made.layers
    W = (first.weight.data * first.mask.data).T          # (D, H): row d is input d's column
    V = last.weight.data * last.mask.data                # (D, H)
    direct = made.direct.weight.data * made.direct.mask.data if made.direct is not None else None
    draw = rng(generator)
    a = np.repeat(first.bias.data[None], n, axis=0)
    x = np.zeros((n, made.input_dim), dtype=a.dtype)
    h = np.empty_like(a)
    for d in made.ordering:
        np.maximum(a, 0, out=h)
        logit = h @ V[d] + last.bias.data[d]
        if direct is not None:
            logit += x @ direct[d]
        x[:, d] = draw.random(n) < 1 / (1 + np.exp(-logit))
        a[x[:, d] > 0] += W[d]
    return x


def sample_teachers(teachers, weights, n, generator=None, batch=1000):
    """n images from the teachers' mixture, each from teacher k with probability pi_k, shuffled."""
    draw = rng(generator)
    counts = draw.multinomial(n, np.asarray(weights, dtype=np.float64) / np.sum(weights))
    chunks = []
    for teacher, count in zip(teachers, counts):
        for i in range(0, count, batch):
            chunks.append(sample_one_layer(teacher, min(batch, count - i), generator))
    return np.concatenate(chunks)[draw.permutation(n)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teachers", nargs="+", help="--out folders of examples/made_mnist.py runs")
    p.add_argument("--teacher-weights", type=float, nargs="+", default=None,
                   help="mixture weights of the teachers (default: equal)")
    p.add_argument("--teacher-samples", type=int, default=0,
                   help="add this many images sampled from the teachers (with their soft targets) to the training "
                        "images: the teachers overfit, so their conditionals on training images carry what they "
                        "memorised, and on their own samples they do not")
    p.add_argument("--hard-weight", type=float, default=0.0,
                   help="weight of the training pixels in the target (0: the teacher's conditionals only)")
    p.add_argument("--hidden", type=int, nargs="+", default=[500])
    p.add_argument("--direct", type=int, default=1, help="direct input-to-output connection")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--lr-step", type=int, default=0, help="multiply the lr by 0.1 every N epochs (0: never)")
    p.add_argument("--ema", type=float, default=0.0, help="evaluate a moving average of the weights")
    p.add_argument("--patience", type=int, default=0, help="early-stopping patience in epochs (0: none)")
    p.add_argument("--max-time", type=float, default=None, help="stop after the epoch that ends past this many seconds")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training digits (for tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/made_distill")
    args = p.parse_args()
    if not 0.0 <= args.hard_weight <= 1.0:
        p.error(f"--hard-weight must lie in [0, 1], got {args.hard_weight}")
    if args.teacher_weights is not None and (len(args.teacher_weights) != len(args.teachers)
                                             or min(args.teacher_weights) <= 0):
        p.error(f"--teacher-weights needs one positive weight per teacher ({len(args.teachers)}), "
                f"got {args.teacher_weights}")
    os.makedirs(args.out, exist_ok=True)
    seed_everything(args.seed)
    start = time.time()

    train, valid, test = (load_binarized_mnist(s) for s in ("train", "valid", "test"))
    train = train[:args.limit_train] if args.limit_train else train
    teachers = [load_run(run) for run in args.teachers]
    student = MADE(784, args.hidden, natural_ordering=True, direct_connection=bool(args.direct), seed=args.seed)
    if not np.array_equal(teachers[0].ordering, student.ordering):
        raise ValueError(f"{args.teachers[0]} was trained with a random ordering; the student uses the natural "
                         f"one, and soft targets need the same ordering: distil natural-ordering runs")
    weights = args.teacher_weights or [1.0] * len(teachers)
    q = teacher_probs(teachers, weights, train)
    targets = (args.hard_weight * train + (1 - args.hard_weight) * q).astype(np.float32)
    if args.teacher_samples:
        extra = sample_teachers(teachers, weights, args.teacher_samples, sg.random.Generator(args.seed + 1))
        image_grid(extra[:64].reshape(64, 28, 28), os.path.join(args.out, "teacher_samples.png"), nrow=8)
        train = np.concatenate([train, extra])
        targets = np.concatenate([targets, teacher_probs(teachers, weights, extra)])   # no hard targets for samples
    teacher_valid = [nll(t, valid) for t in teachers]
    teacher_time = time.time() - start
    print(f"teachers: valid NLL {', '.join(f'{v:.2f}' for v in teacher_valid)}; targets{' and samples' if args.teacher_samples else ''} in {teacher_time:.0f} s")
    del teachers

    optimizer = sg.optim.Adam(student.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = sg.optim.lr_scheduler.StepLR(optimizer, args.lr_step, gamma=0.1) if args.lr_step else None
    ema = sg.optim.EMA(student.parameters(), decay=args.ema) if args.ema else None
    loader = DataLoader((train, targets), batch_size=args.batch_size, shuffle=True, seed=args.seed)

    def loss_fn(model, batch):
        x, target = batch
        return binary_cross_entropy_with_logits(model(x), target, reduction="none").sum(axis=1).mean()

    result = fit(student, optimizer, loader, loss_fn, args.epochs,
                 valid_fn=lambda m: {"valid_nll": nll(m, valid)},
                 metrics_path=os.path.join(args.out, "metrics.jsonl"),
                 early_stopping=EarlyStopping("valid_nll", "min", patience=args.patience or None),
                 checkpoint_dir=args.out, scheduler=scheduler, ema=ema, max_time=args.max_time,
                 progress=not args.no_progress)
    train_time = time.time() - start - teacher_time

    results = {"test_nll": nll(student, test), "best_valid_nll": result.best_metric,
               "best_epoch": result.best_epoch, "epochs_run": result.last_epoch,
               "teacher_valid_nll": teacher_valid, "student_parameters": int(sum(w.data.size for w in student.parameters())),
               "teacher_time_s": round(teacher_time, 1), "train_time_s": round(train_time, 1),
               # the keys made_mixture.load_run reads, so a student can join a mixture or teach in turn
               "config": dict(vars(args), num_masks=1, natural_ordering=1)}
    results["test_bits_per_dim"] = results["test_nll"] / (784 * math.log(2))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    image_grid(student.sample(64).numpy().reshape(64, 28, 28), os.path.join(args.out, "samples.png"), nrow=8)
    curves(os.path.join(args.out, "metrics.jsonl"), os.path.join(args.out, "curves.png"), ["train_loss", "valid_nll"])
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))
    print(f"student {args.hidden}: test NLL {results['test_nll']:.2f} nats (best epoch {result.best_epoch}, "
          f"{train_time / 60:.1f} min)")


if __name__ == "__main__":
    main()
