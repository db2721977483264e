"""How far MADE students are from their teachers: per split, each model's NLL and the
KL(teacher || student) summed over the conditionals, sum_d KL(q_d(x) || s_d(x)), averaged over
images x of that split. A student that overfits has a small KL on training images and a large
one on held-out images; one that lacks capacity has a large KL on both.

    SCRATCHGEN_DATA=../shared/data python bench/made_student_gap.py \\
        runs/made_distill_h500_wd0 runs/made_h500_nat_wd1e-3_s1_ema \\
        --teachers runs/made_h3000_nat_wd2e-3_ema runs/made_h3000_nat_wd2e-3_ema_s1
"""
import argparse
import os
import sys

import numpy as np

import scratchgen as sg
from scratchgen.data import load_binarized_mnist
from scratchgen.losses import binary_cross_entropy, binary_cross_entropy_with_logits

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from made_distill import teacher_probs  # noqa: E402
from made_mixture import load_run  # noqa: E402


def bernoulli_terms(logits, x, q):
    """NLL of x under the student, and sum_d KL(q_d || s_d) = H(q, s) - H(q), both per image."""
    nll = binary_cross_entropy_with_logits(logits, x, reduction="none").sum(axis=1)
    cross_entropy = binary_cross_entropy_with_logits(logits, q, reduction="none").sum(axis=1)
    entropy = binary_cross_entropy(sg.tensor(q), q, reduction="none").sum(axis=1)
    return nll.numpy(), (cross_entropy - entropy).numpy()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("students", nargs="+", help="--out folders of made_mnist.py or made_distill.py runs")
    p.add_argument("--teachers", nargs="+", required=True, help="natural-ordering runs, mixed with equal weights")
    p.add_argument("--limit", type=int, default=10000, help="images per split")
    args = p.parse_args()
    teachers = [load_run(run) for run in args.teachers]
    students = [load_run(run) for run in args.students]
    for run, student in zip(args.students, students):
        if not np.array_equal(student.ordering, teachers[0].ordering):
            raise SystemExit(f"{run} uses another ordering than the teachers: its conditionals are of other "
                             f"pixels, so comparing them one by one means nothing; leave it out")
    print(f"| model | split | NLL | KL(teacher \\|\\| model) |\n| --- | --- | ---: | ---: |")
    for split in ("train", "valid"):
        x = load_binarized_mnist(split)[:args.limit].astype(np.float64)
        q = teacher_probs(teachers, [1.0] * len(teachers), x).astype(np.float64)
        teacher_nll = binary_cross_entropy(sg.tensor(q), x, reduction="none").sum(axis=1).numpy()
        print(f"| teachers' mixture | {split} | {teacher_nll.mean():.2f} | 0 |")
        for run, student in zip(args.students, students):
            with sg.no_grad():
                logits = student(sg.tensor(x.astype(np.float32))).numpy().astype(np.float64)
            nll, kl = bernoulli_terms(sg.tensor(logits), x, q)
            print(f"| {run} | {split} | {nll.mean():.2f} | {kl.mean():.2f} |")


if __name__ == "__main__":
    main()
