"""The CPU thread policy: how many threads BLAS and the Numba kernels get. Owned here, nowhere else.

Two thread pools share the cores in every training step: OpenBLAS's (NumPy's matrix products) and
the one behind Numba's `parallel=True` kernels (Adam, coupling, masked convolution). By default
both spin after each parallel region, waiting for the next one, so while one pool works the other
pool's spinning threads hold the cores it needs, and a step slows down several-fold. The policy
(docs/perf.md has the measurements behind it):

1. Numba's workers sleep when idle: `OMP_WAIT_POLICY=PASSIVE` is set when scratchgen is imported,
   before Numba starts its OpenMP pool (a user's own setting is kept). BLAS keeps spinning: it
   runs back-to-back products, where spinning is what makes it fast.
2. Both pools get the same count, `threads()`: `--threads` / `set_threads(n)`, else
   `$SCRATCHGEN_THREADS`, else the physical cores this process may run on (hyperthread siblings
   add contention, not speed, to dense float work; PyTorch chooses the same).
3. Small kernels stay serial: a kernel asks `parallel_pays(work, min_work)` and runs its
   parallel body only from `min_work` (each kernel's own measured threshold) and with more than
   one thread; below that, a fork-join costs more than the work.

`limit(n)` is the scoped form, for a job that needs fewer threads for a while.
"""
import contextlib
import functools
import os
import sys

ENV = "SCRATCHGEN_THREADS"

# Before any Numba parallel region runs: libgomp reads this once, when Numba loads its pool.
# A user's own OpenMP wait settings are kept.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy  # noqa: E402,F401 - loads the BLAS whose pool the policy sizes

_current = None  # the count in force (None: not applied yet)
_numba_done = False  # Numba's count set to _current (Numba is imported only by the kernels)


def _available_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


@functools.lru_cache(maxsize=None)
def physical_cores():
    """Physical cores among the CPUs this process may use (hyperthread siblings counted once)."""
    cpus = _available_cpus()
    cores = set()
    for c in cpus:
        path = f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"
        try:
            with open(path) as f:
                cores.add(f.read().strip())
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def _from_env():
    raw = os.environ.get(ENV)
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"${ENV}={raw!r} is not a whole number; set it to a thread count >= 1, "
                         f"or unset it for the default") from None
    if n < 1:
        raise ValueError(f"${ENV}={n}: a thread count must be >= 1 (unset it for the default)")
    return n


def default_threads():
    """$SCRATCHGEN_THREADS if set, else the physical cores this process may run on."""
    return _from_env() or physical_cores()


def threads():
    """The thread count in force for BLAS and the Numba kernels (applying the default if needed)."""
    if _current is None:
        set_threads(None)
    return _current


def set_threads(n=None):
    """Give BLAS and Numba `n` threads each (None: `default_threads()`). Returns the count applied."""
    global _current
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"thread count {n}: must be >= 1")
    _apply(n)
    _current = n
    return n


def _apply(n):
    global _numba_done
    from threadpoolctl import threadpool_limits
    _control_openblas_from_this_thread()
    threadpool_limits(limits=n, user_api="blas")
    _numba_done = False
    if "numba" in sys.modules:  # else when a kernel first asks (importing Numba costs a second)
        _apply_numba(n)


def _control_openblas_from_this_thread():
    """threadpoolctl (3.8 on) lets only the first thread that limits OpenBLAS change its process-wide
    pool, and silently ignores the others: a task run in a worker thread (Dask, a thread pool)
    would keep every core. Taking control first makes the limit that follows apply."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:
        return
    release = getattr(OpenBLASController, "clear_controlling_thread", None)
    if release is not None:
        release(force=True)


def _apply_numba(n):
    global _numba_done
    import numba
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    _numba_done = True


@contextlib.contextmanager
def limit(n):
    """Run a block with `n` threads for BLAS and Numba, then restore the count before it."""
    before = threads()
    set_threads(n)
    try:
        yield n
    finally:
        set_threads(before)


def parallel_pays(work, min_work):
    """True when a kernel with `work` units should run its parallel body: from `min_work` units
    on (the kernel's measured break-even), and only when more than one thread is allowed."""
    n = threads()
    if not _numba_done:
        _apply_numba(n)
    return work >= min_work and n > 1


def _apply_default_on_import():
    try:
        set_threads(None)
    except ValueError as e:  # a bad $SCRATCHGEN_THREADS: say so when it is used, not on import
        import warnings
        warnings.warn(f"{e}; using the default for now", stacklevel=3)
        set_threads(physical_cores())


_apply_default_on_import()
