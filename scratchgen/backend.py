"""The array module behind a tensor: NumPy on the CPU, CuPy on a GPU (imported only when asked for)."""
import numpy as np

_cupy = None


def cupy():
    """Import CuPy on first use, with an error that says how to get it."""
    global _cupy
    if _cupy is None:
        try:
            import cupy as cp
        except ImportError as e:
            raise RuntimeError("device 'cuda' needs CuPy: pip install 'scratchgen[gpu]' "
                               "(cupy-cuda12x) on a machine with an NVIDIA GPU") from e
        _cupy = cp
    return _cupy


def array_module(a):
    """numpy for NumPy arrays (the fast path); cupy for anything that lives on a GPU."""
    if isinstance(a, (np.ndarray, np.generic)):
        return np
    return cupy().get_array_module(a)


def special(xp):
    """scipy.special, or its CuPy twin, for the array module xp."""
    if xp is np:
        import scipy.special
        return scipy.special
    import cupyx.scipy.special
    return cupyx.scipy.special


def device_of(a):
    return "cpu" if isinstance(a, (np.ndarray, np.generic)) else "cuda"


def to_device(a, device):
    device = str(device)
    if device == "cpu":
        return a if isinstance(a, np.ndarray) else cupy().asnumpy(a)
    if device.startswith("cuda"):
        return cupy().asarray(a)
    raise ValueError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def scatter_add(target, index, values):
    """target[index] += values, summing over repeated indices (np.add.at semantics)."""
    if isinstance(target, np.ndarray):
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)
    return target
