"""Progress for anything a user waits on: a tqdm bar on a terminal, plain lines in a log.

    for batch in progress(loader, total=len(loader), desc="epoch 1/10"):
        ...

On a terminal (stderr is a TTY) this is tqdm. Redirected to a file or a pipe, tqdm's carriage
returns would pile up as garbage, so it prints a plain line instead at most every `every` seconds
(and once at the end, if it printed anything), e.g. `sampling: 300/784 (38%) 12s`.
"""
import sys
import time


def _plain(iterable, total, desc, every, stream):
    start = last = time.perf_counter()
    i, spoke = 0, False
    for i, item in enumerate(iterable, 1):
        yield item
        now = time.perf_counter()
        if now - last >= every:
            last, spoke = now, True
            share = f" ({100 * i / total:.0f}%)" if total else ""
            print(f"{desc}: {i}/{total or '?'}{share} {now - start:.0f}s", file=stream, flush=True)
    if spoke:
        print(f"{desc}: {i}/{total or i} done in {time.perf_counter() - start:.0f}s", file=stream, flush=True)


def progress(iterable, total=None, desc="", enabled=True, every=10.0, stream=None):
    """Wrap `iterable` with progress output (nothing when enabled is False). Returns an iterable
    with tqdm's `set_postfix` and `close` available either way."""
    stream = stream or sys.stderr
    if not enabled:
        return _Quiet(iterable)
    if getattr(stream, "isatty", lambda: False)():
        from tqdm.auto import tqdm
        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5, file=stream)
    return _Quiet(_plain(iterable, total, desc, every, stream))


class _Quiet:
    """An iterable with tqdm's `set_postfix` and `close`, doing nothing extra."""

    def __init__(self, iterable):
        self._it = iterable

    def __iter__(self):
        return iter(self._it)

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass
