"""Which implementation runs a kernel call, and what every compiled target shares.

One kernel body, several targets. Each kernel family (masked convolution, coupling, optimizer
steps) writes its per-element math once, as plain Python functions, and compiles them per target:
`cpu_inline(f)` for the Numba CPU loops (inlined into the loop, so LLVM sees one straight loop to
vectorise), `device(f)` for the Numba CUDA kernels (a `cuda.jit(device=True)` function, which the
CUDA simulator runs as Python); the NumPy reference calls the same function on whole arrays where
its operations exist for arrays (the coupling's), and spells the steps out with ufuncs where the
body needs scalar code that both compiled targets accept (Adam's `math.sqrt` and selects).

Choosing an implementation. A family registers its implementations and defaults here
(`register`); `select(family, impl, arrays)` turns a call's `impl=` (None: automatic) into one of
them. `force_impl(name)` overrides every call of every family that has `name` (or only of the
families named) for a block: the one switch tests and benchmarks use. Families without `name`
keep their own choice, so `force_impl("gemm")` does not break the coupling kernels.

GPU plumbing. `cuda()` imports numba.cuda on first use (importing it costs time, and it may be
missing: numba-cuda is the `gpu` extra), `CudaIO` moves host arrays to the device and back while
device arrays (CuPy, through `__cuda_array_interface__`) stay in place, and `launch` sizes grids.
"""
import contextlib
from typing import NamedTuple

import numpy as np

FLOATS = (np.float32, np.float64)
IMPLS = ("reference", "gemm", "numba", "cuda", "cupy")   # every implementation name of every family
FAMILY_NAMES = ("masked_conv", "coupling", "optim", "col2im", "nade")      # known before their modules are imported


class Family(NamedTuple):
    impls: tuple          # the implementations this family has
    host: str             # the default for NumPy float32/float64 arrays
    device: str           # the default for device (CuPy) float arrays
    host_only: tuple      # implementations that need NumPy float32/float64 arrays


FAMILIES = {}
_forced = []              # stack of (impl, families or None for all), innermost last


def register(name, impls, host, device, host_only=("gemm", "numba")):
    """Declare a kernel family (one of FAMILY_NAMES); returns `name` (for `select`)."""
    assert name in FAMILY_NAMES, name
    FAMILIES[name] = Family(tuple(impls), host, device, tuple(h for h in host_only if h in impls))
    return name


@contextlib.contextmanager
def force_impl(impl, *families):
    """Run every kernel call of the block with `impl` (tests, benchmarks), in all families that
    have it, or only in `families` (FAMILY_NAMES). Nests; a call's own
    `impl=` is overridden."""
    if impl == "numpy":
        impl = "reference"
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    unknown = [f for f in families if f not in FAMILY_NAMES]
    if unknown:
        raise ValueError(f"unknown kernel families {unknown}; the families are {FAMILY_NAMES}")
    _forced.append((impl, families or None))
    try:
        yield impl
    finally:
        _forced.remove((impl, families or None))


def forced(family):
    """The implementation forced on `family` now, or None."""
    for impl, families in reversed(_forced):
        if (families is None or family in families) and impl in FAMILIES[family].impls:
            return impl
    return None


def on_host(arrays):
    return all(isinstance(a, np.ndarray) for a in arrays if a is not None)


def select(family, impl, arrays):
    """The implementation to run for arrays `arrays` (None entries ignored) and a call's `impl`
    (None or 'auto': the family's default for where the arrays live and their dtype)."""
    fam = FAMILIES[family]
    impl = forced(family) or impl or "auto"
    if impl == "numpy":                      # the optimizer kernels' old name for the reference
        impl = "reference"
    arrays = [a for a in arrays if a is not None]
    host, floating = on_host(arrays), arrays[0].dtype in FLOATS
    if impl == "auto":
        return (fam.host if host else fam.device) if floating else "reference"
    if impl not in fam.impls:
        raise ValueError(f"impl must be one of {fam.impls} or None, got {impl!r}")
    if impl in fam.host_only and not (host and floating):
        raise TypeError(f"impl={impl!r} needs NumPy float32/float64 arrays")
    if impl != "reference" and not floating:
        raise TypeError(f"impl={impl!r} needs float32/float64 arrays")
    return impl


# ------------------------------------------------------------------------------------------------
# Compiling one body per target
# ------------------------------------------------------------------------------------------------
def cpu_inline(fn=None, **options):
    """`fn` for the Numba CPU loops: njit(inline='always'), so each loop is one body to vectorise."""
    from numba import njit
    if fn is None:
        return lambda f: cpu_inline(f, **options)
    return njit(inline="always", **options)(fn)


def device(fn):
    """`fn` as a Numba CUDA device function (imports numba.cuda: call it when building kernels)."""
    return cuda().jit(device=True)(fn)


# ------------------------------------------------------------------------------------------------
# Arrays and devices
# ------------------------------------------------------------------------------------------------
def cupy():
    import cupy
    return cupy


def xp(a):
    """The array module of `a`: NumPy, or CuPy (imported only when `a` is not a NumPy array)."""
    return np if isinstance(a, np.ndarray) else cupy().get_array_module(a)


def cuda():
    """numba.cuda, imported on first use.

    NumPy 2.5 removed `np.row_stack` (an alias of `np.vstack` since NumPy 1.0), and numba-cuda
    0.30.4, its last release (the project is in maintenance mode and declined the fix), registers
    an overload for it when imported, so `from numba import cuda` fails with the NumPy a fresh
    install gets. The alias is put back first, only where it is missing: that is all numba-cuda
    needs, and pinning NumPy below 2.5 for
    the `gpu` extra would hold back every other package in the environment."""
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack
    from numba import cuda as numba_cuda
    return numba_cuda


def simulating():
    """True under NUMBA_ENABLE_CUDASIM=1, where every CUDA thread is a Python thread."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


class CudaIO:
    """For a Numba CUDA launch: host NumPy arrays go to the device and back; device arrays (CuPy)
    stay where they are and the results are device arrays too."""

    def __init__(self, arrays):
        self.host = on_host(arrays)

    def put(self, a):
        if a is None:
            return None
        return cuda().to_device(np.ascontiguousarray(a)) if self.host else xp(a).ascontiguousarray(a)

    def empty(self, shape, dtype):
        return cuda().device_array(shape, dtype) if self.host else cupy().empty(shape, dtype)

    def zeros(self, shape, dtype):
        return cuda().to_device(np.zeros(shape, dtype)) if self.host else cupy().zeros(shape, dtype)

    def get(self, a):
        return a.copy_to_host() if self.host else a


def launch(work, threads, max_blocks, per_block=False, sim_threads=32):
    """(blocks, threads) for a grid-stride kernel over `work` items: one thread per item, or one
    block per item (`per_block`). The simulator runs a Python thread per CUDA thread: fewer there."""
    if simulating():
        threads = min(threads, sim_threads)
    blocks = work if per_block else -(-work // threads)
    return max(1, min(blocks, max_blocks)), threads
