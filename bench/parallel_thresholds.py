#!/usr/bin/env python
"""Where a Numba kernel's parallel body starts to pay: serial against parallel time by size.

Each kernel family has one threshold (PARALLEL_MIN in kernels/optim_step.py and
kernels/coupling_numba.py): below it `scratchgen.threads.parallel_pays` picks the serial body.
A parallel region costs a wake-up of the sleeping workers (the thread policy lets them sleep), so
the break-even is where the work saved exceeds that. Run it under the thread settings to compare
(each in its own process):

    python bench/parallel_thresholds.py                      # the policy (workers sleep when idle)
    GOMP_SPINCOUNT=10000 python bench/parallel_thresholds.py # workers spin a little first

Prints, per kernel and size, the median serial and parallel times (us) and their ratio.
"""
import argparse
import statistics
import time

import numpy as np


def _time(fn, reps, rounds=5):
    fn()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append((time.perf_counter() - t) / reps * 1e6)
    return statistics.median(out)


def adam_cases(sizes):
    from scratchgen.kernels import optim_step as O
    coefs = tuple(np.float32(c) for c in (0, 1, .9, .1, .999, .001, 1e-3, 1., 1e-8))
    for n in sizes:
        bufs = [np.random.rand(n).astype(np.float32) for _ in range(5)]
        yield "adam", n, (lambda: O._adam_ser(*bufs, coefs, False, False)), (lambda: O._adam_par(*bufs, coefs, False, False))


def coupling_cases(sizes):
    from scratchgen.kernels import coupling_numba as C
    for n in sizes:
        d = 392
        rows = max(2, n // d)
        v, s, t = (np.random.rand(rows, d).astype(np.float32) for _ in range(3))
        out, e = np.empty_like(v), np.empty_like(v)
        ld = np.empty(rows, np.float32)
        args = (v, s, t, out, ld, e, np.float32(0), False, True)
        yield "coupling rows", rows * d, (lambda: C._rows_ser(*args)), (lambda: C._rows_par(*args))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="4096,16384,65536,262144,524288,1048576,4194304")
    a = p.parse_args(argv)
    import scratchgen.threads as policy
    policy.parallel_pays(1, 0)  # give Numba the policy's thread count
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"threads: {policy.threads()}")
    print("| kernel | elements | serial us | parallel us | parallel / serial |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for cases in (adam_cases(sizes), coupling_cases(sizes)):
        for name, n, ser, par in cases:
            reps = max(10, int(2e7 // n))
            ts, tp = _time(ser, reps), _time(par, reps)
            print(f"| {name} | {n} | {ts:.1f} | {tp:.1f} | {tp / ts:.2f} |")


if __name__ == "__main__":
    main()
