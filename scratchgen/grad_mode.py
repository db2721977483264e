"""Whether operations record a graph: `no_grad`, `enable_grad`, `set_grad_enabled`."""
import functools


class _GradMode:
    enabled = True


class set_grad_enabled:
    """Turn graph recording on or off; a context manager and a decorator, as in PyTorch."""

    def __init__(self, mode=True):
        self.mode = bool(mode)

    def __enter__(self):
        self.prev = _GradMode.enabled
        _GradMode.enabled = self.mode

    def __exit__(self, *exc):
        _GradMode.enabled = self.prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(set_grad_enabled):
    """Inside, no graph is built and no backward rule is kept: use it for evaluation and updates."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Undo an enclosing `no_grad`."""

    def __init__(self):
        super().__init__(True)


def is_grad_enabled():
    return _GradMode.enabled
