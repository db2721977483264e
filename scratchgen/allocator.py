"""glibc malloc settings for array-sized blocks, applied when scratchgen is imported.

A training step frees and allocates the same few arrays of a megabyte or more every step. glibc
hands blocks over 128 KB to mmap at first, and gives freed memory at the top of the heap back to
the OS past a similar threshold; a short-lived array then costs fresh pages every step (a page
fault and zeroing per 4 KB), which on small models is a third of the step. Raising both
thresholds keeps such blocks in the heap for reuse, as PyTorch's allocator does: memory is reused
rather than returned, so a process holds its peak until it ends (bench/step_time.py shows the
difference on a fresh process). A user's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ win.
"""
import ctypes
import os
import sys

MMAP_THRESHOLD = 64 << 20   # blocks below this come from the heap (glibc's cap for its own adaptive value is 32 MB)
TRIM_THRESHOLD = 128 << 20  # free memory at the top of the heap kept for reuse up to this much
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # mallopt parameters (malloc.h)


def configure():
    """Apply the thresholds; True if they were set (Linux glibc, no user override), else False."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_MMAP_THRESHOLD_") \
            or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): leave its allocator alone
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


applied = configure()
