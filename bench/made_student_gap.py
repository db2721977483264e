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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from made_distill import teacher_probs  # noqa: E402
from made_mixture import load_run  # noqa: E402


def bernoulli_terms(p, x, q):
    """NLL of x under p, and sum_d KL(q_d || p_d), both per image."""
    p, q = np.clip(p, 1e-7, 1 - 1e-7), np.clip(q, 1e-7, 1 - 1e-7)
    nll = -(x * np.log(p) + (1 - x) * np.log1p(-p)).sum(axis=1)
    kl = (q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))).sum(axis=1)
    return nll, kl


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
        print(f"| teachers' mixture | {split} | {bernoulli_terms(q, x, q)[0].mean():.2f} | 0 |")
        for run, student in zip(args.students, students):
            with sg.no_grad():
                s = student(sg.tensor(x.astype(np.float32))).sigmoid().numpy().astype(np.float64)
            nll, kl = bernoulli_terms(s, x, q)
            print(f"| {run} | {split} | {nll.mean():.2f} | {kl.mean():.2f} |")


if __name__ == "__main__":
    main()
