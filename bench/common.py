"""Shared helpers for the benchmarks in bench/: thread pinning, timing, machine info, markdown.

Import this module BEFORE numpy/torch/scratchgen and call `pin_threads(n)` first thing:
the BLAS/OpenMP thread pools read their environment variables when they are loaded.
This module itself imports nothing heavy at the top for that reason.
"""
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # `import scratchgen` from a checkout without installing it
    sys.path.insert(0, REPO_ROOT)

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")


def pin_threads(n, affinity=False):
    """Cap every thread pool at `n` threads. Call before numpy (or torch) is imported.

    With `affinity=True` the process is also bound to the first `n` CPUs (Linux only).
    If numpy is already loaded, threadpoolctl (when installed) is used as a fallback.
    """
    n = int(n)
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    if affinity and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:n]
        os.sched_setaffinity(0, cpus)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(n)
        except ImportError:
            print(f"warning: numpy was imported before pin_threads({n}); its BLAS pool may be larger",
                  file=sys.stderr)
    if "torch" in sys.modules:
        pin_torch(n)


def pin_torch(n):
    """torch.set_num_threads(n) (intra-op) and a single inter-op thread. Call after `import torch`."""
    import torch
    torch.set_num_threads(int(n))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before any parallel work has started
        pass


def blas_threads():
    """{library: threads} as seen by threadpoolctl, or {} without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {f"{i['internal_api']}({os.path.basename(i['filepath'])})": i["num_threads"]
            for i in threadpool_info()}


class Timing:
    """Seconds per call: median, interquartile range, and the raw per-repeat samples."""
    __slots__ = ("median", "iqr", "samples", "number")

    def __init__(self, samples, number):
        self.samples, self.number = samples, number
        self.median = statistics.median(samples)
        if len(samples) >= 2:
            q = statistics.quantiles(samples, n=4, method="inclusive")
            self.iqr = q[2] - q[0]
        else:
            self.iqr = 0.0

    def __iter__(self):  # `median, iqr = timeit(...)`
        return iter((self.median, self.iqr))

    def __repr__(self):
        return f"Timing(median={self.median:.3e}s, iqr={self.iqr:.3e}s, repeat={len(self.samples)}, number={self.number})"


def timeit(fn, warmup=3, repeat=15, number=1, disable_gc=False):
    """Time `fn()`: `warmup` untimed calls, then `repeat` samples of `number` back-to-back calls.

    Returns a Timing whose median and iqr are in seconds per single call (a sample's time
    divided by `number`); it unpacks as `(median, iqr)`. Use number > 1 for calls of a few
    microseconds so the clock's own overhead does not count. The garbage collector stays on
    by default (as it is in a training loop); garbage is collected once before timing.
    """
    for _ in range(warmup):
        fn()
    gc.collect()
    was_enabled = gc.isenabled()
    if disable_gc:
        gc.disable()
    try:
        clock = time.perf_counter
        samples = []
        for _ in range(repeat):
            t0 = clock()
            for _ in range(number):
                fn()
            samples.append((clock() - t0) / number)
    finally:
        if was_enabled:
            gc.enable()
    return Timing(samples, number)


def compare(fns, warmup=3, repeat=15, number=1, disable_gc=False):
    """Time several callables {name: fn} with their samples interleaved round-robin.

    On a shared or throttled machine the load drifts; interleaving makes every contender see
    the same drift, so their ratio stays meaningful. `number` is an int or {name: int}.
    Returns {name: Timing}.
    """
    numbers = number if isinstance(number, dict) else {k: number for k in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    gc.collect()
    was_enabled = gc.isenabled()
    if disable_gc:
        gc.disable()
    samples = {k: [] for k in fns}
    try:
        clock = time.perf_counter
        for _ in range(repeat):
            for k, fn in fns.items():
                n = numbers[k]
                t0 = clock()
                for _ in range(n):
                    fn()
                samples[k].append((clock() - t0) / n)
    finally:
        if was_enabled:
            gc.enable()
    return {k: Timing(v, numbers[k]) for k, v in samples.items()}


def loadavg():
    """1-minute load average (None where unavailable): report it, a busy machine skews timings."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def autonumber(fn, target_s=0.02, cap=100_000):
    """A `number` for timeit so one sample lasts about `target_s` seconds."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    return int(min(cap, max(1, target_s / once)))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info():
    """A dict describing where the numbers come from (call after the libraries are imported)."""
    versions = {"python": platform.python_version()}
    for mod in ("numpy", "torch", "numba", "scratchgen"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - absent or broken: say so, do not fail the benchmark
            versions[mod] = "not installed"
    try:
        git = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip() or "no commit"
    except (OSError, subprocess.SubprocessError):
        git = "unknown"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "versions": versions,
        "git": git,
    }


def md_table(headers, rows, align=None):
    """A GitHub markdown table. `align` is a string of 'l'/'r' per column (default: first left)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(c) for c in r] for r in rows]
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(out)


def fmt(x, digits=2):
    """A number with `digits` decimals, or '-' for None."""
    return "-" if x is None else f"{x:.{digits}f}"
